package kafka

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lambdarec/lambdarec/internal/config"
)

// The group error log explains each error and logs at most one a period,
// counting the ones it held back. The period is an hour, and its end is
// simulated by moving the last line's time back, so that a loaded machine
// cannot stretch the calls across a period.
func TestGroupErrorLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	sec := Security{SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "svc", PasswordEnv: "KAFKA_PASSWORD"}}
	g := &groupErrorLog{log: slog.New(slog.NewTextHandler(&buf, nil)), sec: sec, every: time.Hour}
	refused := fmt.Errorf("join group: %w", kerr.SaslAuthenticationFailed)
	for range 5 {
		g.OnGroupManageError(refused)
	}
	if n := strings.Count(buf.String(), "kafka consumer group error"); n != 1 {
		t.Fatalf("%d lines for 5 errors within the period:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "kafka.sasl.password_env KAFKA_PASSWORD") {
		t.Fatalf("error not explained:\n%s", buf.String())
	}
	g.mu.Lock()
	g.last = g.last.Add(-time.Hour) // the period is over
	g.mu.Unlock()
	g.OnGroupManageError(refused)
	if n := strings.Count(buf.String(), "kafka consumer group error"); n != 2 || !strings.Contains(buf.String(), "suppressed=4") {
		t.Fatalf("after the period: %d lines, want 2 with suppressed=4:\n%s", n, buf.String())
	}
}
