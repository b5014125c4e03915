package speed

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
)

// TestSecureBrokers runs the layer over SCRAM-SHA-512 and over
// SCRAM-SHA-512 with TLS (kfake always, Apache Kafka's SASL listeners in
// CI): batch ⊕ speed equals the recompute, invalid records are counted
// (the archive owns their dead letters).
// With a wrong password the layer stops with an error that says so and
// holds no password.
func TestSecureBrokers(t *testing.T) {
	kafkatest.RunTargets(t, kafkatest.Secure(), func(t *testing.T, kb *kafkatest.Broker) {
		tt := newTestTopicOn(t, kb, 3)
		r := rand.New(rand.NewPCG(21, 21))
		src := &fakeSource{}
		views := store.NewMemory()
		l := startLayer(t, tt, src, views, nil)
		c := newChecker(t, tt)
		g := newStreamGen(r, time.Now().Add(-time.Hour))
		tt.produce(g.batch(600))
		bound := publishRandom(t, r, tt, src, c, "b1", nil)
		tt.produce(g.batch(300))
		waitServed(t, tt, "b1", l)
		c.check("over "+kb.Name, bound, l)
		checkViews(t, tt, views)
		checkNoDeadLetters(t, tt, l)

		const wrong = "wrong-speed-password"
		t.Setenv("LAMBDAREC_TEST_WRONG_PASSWORD", wrong)
		cfg := Config{Brokers: kb.Brokers, Security: kb.Security, Topic: tt.topic, Group: tt.group("wrong-password")}
		cfg.Security.SASL.PasswordFile, cfg.Security.SASL.PasswordEnv = "", "LAMBDAREC_TEST_WRONG_PASSWORD"
		var logs syncBuffer
		bad, err := New(cfg, Deps{Views: store.NewMemory(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		// The layer keeps trying (the password may be fixed); it stays not
		// ready and logs why.
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- bad.Run(ctx) }()
		if kb.Real {
			defer func() {
				if t.Failed() {
					t.Log(logs.String())
				}
			}()
			waitFor(t, 8*time.Second, "the refused login logged", func() bool { return strings.Contains(logs.String(), kerr.SaslAuthenticationFailed.Message) })
		}
		if bad.Ready() {
			t.Fatal("a layer that cannot log in is ready")
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("Run: %v", err)
		}
		if strings.Contains(logs.String(), wrong) {
			t.Fatalf("the logs hold the password:\n%s", logs.String())
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
