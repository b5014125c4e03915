package collector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
)

// TestSecureBrokers: the collector produces over SCRAM-SHA-512 and over
// SCRAM-SHA-512 with TLS (kfake always, Apache Kafka's SASL listeners in CI);
// with a wrong password it is not ready, and says why without the password.
func TestSecureBrokers(t *testing.T) {
	kafkatest.RunTargets(t, kafkatest.Secure(), func(t *testing.T, kb *kafkatest.Broker) {
		e := newTestEnvOn(t, kb, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.col.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
		evs := testEvents(5)
		acceptCase(t, e, "application/json", jsonArray(t, evs), evs)

		const wrong = "not-the-password"
		pw := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pw, []byte(wrong+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sec := kb.Security
		sec.SASL.PasswordEnv, sec.SASL.PasswordFile = "", pw
		cl, err := kafka.Connect(kb.Brokers, sec)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		col, err := New(Config{Topic: e.topic}, Deps{Client: cl})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		err = col.Ready(rctx)
		switch {
		case err == nil:
			t.Fatal("Ready with a wrong password: nil error")
		case kb.Real && !errors.Is(err, kerr.SaslAuthenticationFailed):
			// kfake closes the connection instead of answering.
			t.Fatalf("Ready with a wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
		case !kb.Real:
			return
		}
		if msg := kafka.Explain(err, sec).Error(); strings.Contains(msg, wrong) || !strings.Contains(msg, "kafka.sasl.password_file "+pw) {
			t.Fatalf("explained error %q: want the password's file named and the password absent", msg)
		}
	})
}
