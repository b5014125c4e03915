package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
)

// setKafkaSecurity configures the commands the test runs for kb's
// listener through the environment, as a deployment would.
func setKafkaSecurity(t *testing.T, kb *kafkatest.Broker, passwordEnv string) {
	t.Helper()
	s := kb.Security
	if s.TLS.Enabled {
		t.Setenv("LAMBDAREC_KAFKA_TLS_ENABLED", "true")
		t.Setenv("LAMBDAREC_KAFKA_TLS_CA_FILE", s.TLS.CAFile)
	}
	t.Setenv("LAMBDAREC_KAFKA_SASL_MECHANISM", s.SASL.Mechanism)
	t.Setenv("LAMBDAREC_KAFKA_SASL_USERNAME", s.SASL.Username)
	t.Setenv("LAMBDAREC_KAFKA_SASL_PASSWORD_ENV", passwordEnv)
}

// TestCheckConfigHoldsNoSecret: --check-config with SASL settings says the
// configuration is fine and prints no password.
func TestCheckConfigHoldsNoSecret(t *testing.T) {
	const secret = "s3cret-of-the-check"
	t.Setenv("LAMBDAREC_TEST_CHECK_PASSWORD", secret)
	t.Setenv("LAMBDAREC_KAFKA_TLS_ENABLED", "true")
	t.Setenv("LAMBDAREC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("LAMBDAREC_KAFKA_SASL_USERNAME", "lambdarec")
	t.Setenv("LAMBDAREC_KAFKA_SASL_PASSWORD_ENV", "LAMBDAREC_TEST_CHECK_PASSWORD")
	for _, cmd := range []string{"archive", "speed", "serve", "generate"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{cmd, "--check-config"}, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "configuration ok") {
			t.Fatalf("%s --check-config: exit %d, %q %q", cmd, code, stdout.String(), stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), secret) {
			t.Fatalf("%s --check-config printed the password", cmd)
		}
	}
}

// TestGenerateOverSecureKafka: `lambdarec generate` produces over SCRAM and
// over SCRAM with TLS, configured only through kafka.tls and kafka.sasl; with
// a wrong password it fails, saying why, without the password.
func TestGenerateOverSecureKafka(t *testing.T) {
	kafkatest.RunTargets(t, kafkatest.Secure(), func(t *testing.T, kb *kafkatest.Broker) {
		topic := kb.Unique(t, "clicks")
		kb.Topics(t, 3, topic)
		password := os.Getenv(kb.Security.SASL.PasswordEnv)
		if password == "" {
			t.Fatalf("no password in %s", kb.Security.SASL.PasswordEnv)
		}
		t.Setenv("LAMBDAREC_TEST_GENERATE_PASSWORD", password)
		setKafkaSecurity(t, kb, "LAMBDAREC_TEST_GENERATE_PASSWORD")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"generate", "--brokers", kb.Brokers[0], "--topic", topic, "--count", "500", "--seed", "3"}, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "generated 500 records") {
			t.Fatalf("generate: exit %d, %q %q", code, stdout.String(), stderr.String())
		}

		const wrong = "wrong-generate-password"
		t.Setenv("LAMBDAREC_TEST_GENERATE_PASSWORD", wrong)
		stdout.Reset()
		stderr.Reset()
		code = run(context.Background(), []string{"generate", "--brokers", kb.Brokers[0], "--topic", topic, "--count", "50", "--seed", "4"}, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code == 0 {
			t.Fatalf("generate with a wrong password: exit 0, %q", out)
		}
		if strings.Contains(out, wrong) {
			t.Fatalf("generate printed the password: %q", out)
		}
		if kb.Real && (!strings.Contains(out, "SASL_AUTHENTICATION_FAILED") || !strings.Contains(out, "kafka.sasl.password_env LAMBDAREC_TEST_GENERATE_PASSWORD")) {
			t.Fatalf("generate with a wrong password: %q, want an explained SASL_AUTHENTICATION_FAILED", out)
		}
	})
}
