package archive

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
)

// TestArchiveSecureBrokers archives a stream over SCRAM-SHA-512 and over
// SCRAM-SHA-512 with TLS (kfake always, Apache Kafka's SASL listeners in
// CI): exactly the valid records in the table, the others in the DLQ. With
// a wrong password the archiver stops with an error that says so and holds
// no password.
func TestArchiveSecureBrokers(t *testing.T) {
	kafkatest.RunTargets(t, kafkatest.Secure(), func(t *testing.T, kb *kafkatest.Broker) {
		b := startKafka(t, kb)
		cfg := testConfig(t, b)
		lake := openLake(t, cfg)
		recs := stream(t, 1500, 11)
		produce(t, b, recs)
		stop := runArchiver(t, cfg, nil)
		waitFor(t, time.Minute, "the stream archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		checkArchive(t, lake, b, recs)

		const wrong = "wrong-archive-password"
		t.Setenv("LAMBDAREC_TEST_WRONG_PASSWORD", wrong)
		bad := testConfig(t, b)
		bad.Kafka.SASL.PasswordFile, bad.Kafka.SASL.PasswordEnv = "", "LAMBDAREC_TEST_WRONG_PASSWORD"
		a, err := New(bad, Deps{Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		err = a.Run(ctx)
		switch {
		case err == nil:
			t.Fatal("Run with a wrong password: nil error")
		case strings.Contains(err.Error(), wrong):
			t.Fatalf("error holds the password: %v", err)
		case kb.Real && (!errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "kafka.sasl.password_env LAMBDAREC_TEST_WRONG_PASSWORD")):
			t.Fatalf("Run with a wrong password: %v, want an explained SASL_AUTHENTICATION_FAILED", err)
		}
		t.Logf("wrong password: %v", err)
	})
}
