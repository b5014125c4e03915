package kafka_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
)

// metadata connects with sec and asks for the cluster's metadata, the first
// request every role makes; the error is explained as the roles explain it.
func metadata(t *testing.T, brokers []string, sec kafka.Security) error {
	t.Helper()
	cl, err := kafka.Connect(brokers, sec, kgo.RequestRetries(2), kgo.RetryTimeout(3*time.Second), kgo.DialTimeout(3*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	return kafka.Explain(err, sec)
}

// TestSecureConnections connects to every authenticated listener (kfake's,
// and Apache Kafka's in CI) with the right settings, then with each usual
// mistake: each gives an error that says what is wrong, and none holds the
// password.
func TestSecureConnections(t *testing.T) {
	kafkatest.RunTargets(t, kafkatest.Secure(), func(t *testing.T, kb *kafkatest.Broker) {
		if err := metadata(t, kb.Brokers, kb.Security); err != nil {
			t.Fatalf("metadata with the right settings: %v", err)
		}
		password, err := kafka.Password(kb.Security.SASL)
		if err != nil {
			t.Fatal(err)
		}
		noSecret := func(t *testing.T, err error) {
			t.Helper()
			if strings.Contains(err.Error(), password) {
				t.Fatalf("error holds the password: %v", err)
			}
		}

		t.Run("wrong password", func(t *testing.T) {
			const wrong = "wrong-password"
			t.Setenv("LAMBDAREC_TEST_WRONG_PASSWORD", wrong)
			sec := kb.Security
			sec.SASL.PasswordFile, sec.SASL.PasswordEnv = "", "LAMBDAREC_TEST_WRONG_PASSWORD"
			err := metadata(t, kb.Brokers, sec)
			wantSASLRefused(t, kb, err)
			if strings.Contains(err.Error(), wrong) {
				t.Fatalf("error holds the password: %v", err)
			}
			t.Logf("wrong password: %v", err)
		})
		t.Run("unknown user", func(t *testing.T) {
			sec := kb.Security
			sec.SASL.Username = "nobody"
			err := metadata(t, kb.Brokers, sec)
			wantSASLRefused(t, kb, err)
			noSecret(t, err)
		})
		t.Run("no SASL", func(t *testing.T) {
			sec := kb.Security
			sec.SASL = config.KafkaSASL{}
			err := metadata(t, kb.Brokers, sec)
			if err == nil || !strings.Contains(err.Error(), "kafka.sasl") {
				t.Fatalf("no SASL on a SASL listener: %v, want an error that points at kafka.sasl", err)
			}
			t.Logf("no SASL: %v", err)
		})
		if !kb.Security.TLS.Enabled {
			t.Run("TLS client on a plaintext listener", func(t *testing.T) {
				sec := kb.Security
				sec.TLS = config.KafkaTLS{Enabled: true, InsecureSkipVerify: true}
				err := metadata(t, kb.Brokers, sec)
				if err == nil {
					t.Fatal("TLS to a plaintext listener: no error")
				}
				// kfake waits for a Kafka request and the handshake times
				// out; Apache Kafka closes the connection at once.
				if kb.Real && !strings.Contains(err.Error(), "kafka.tls.enabled") {
					t.Fatalf("TLS to a plaintext listener: %v, want an error that points at kafka.tls.enabled", err)
				}
				t.Logf("TLS client on a plaintext listener: %v", err)
			})
			return
		}
		t.Run("unknown CA", func(t *testing.T) {
			sec := kb.Security
			sec.TLS.CAFile = kafkatest.NewCA(t).File
			err := metadata(t, kb.Brokers, sec)
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "not signed by a CA of kafka.tls.ca_file "+sec.TLS.CAFile) {
				t.Fatalf("unknown CA: %v, want an explained x509 unknown authority error", err)
			}
			noSecret(t, err)
			t.Logf("unknown CA: %v", err)
		})
		t.Run("plaintext client on the TLS listener", func(t *testing.T) {
			sec := kb.Security
			sec.TLS = config.KafkaTLS{}
			err := metadata(t, kb.Brokers, sec)
			if err == nil || !strings.Contains(err.Error(), "kafka.tls.enabled") {
				t.Fatalf("plaintext on TLS: %v, want an error that points at kafka.tls.enabled", err)
			}
			noSecret(t, err)
			t.Logf("plaintext client on the TLS listener: %v", err)
		})
		t.Run("wrong server name", func(t *testing.T) {
			sec := kb.Security
			sec.TLS.ServerName = "kafka.example.com"
			err := metadata(t, kb.Brokers, sec)
			if err == nil || !strings.Contains(err.Error(), "kafka.tls.server_name") {
				t.Fatalf("wrong server name: %v, want an error that points at kafka.tls.server_name", err)
			}
		})
	})
}

// wantSASLRefused checks the error of a refused login: Apache Kafka answers
// SASL_AUTHENTICATION_FAILED; kfake closes the connection instead, and the
// explanation then points at kafka.sasl.
func wantSASLRefused(t *testing.T, kb *kafkatest.Broker, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatal("refused login: no error")
	case kb.Real && (!errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "check both")):
		t.Fatalf("refused login: %v, want an explained SASL_AUTHENTICATION_FAILED", err)
	case !kb.Real && !strings.Contains(err.Error(), "kafka.sasl"):
		t.Fatalf("refused login: %v, want an error that points at kafka.sasl", err)
	}
}

// TestSecurityOptsErrors: files and variables the settings name are read
// when the client is built; a missing one is an error naming the key and
// the place, and never a secret.
func TestSecurityOptsErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notPEM, []byte("s3cr3t-looking-content"), 0o600); err != nil {
		t.Fatal(err)
	}
	scram := func(mod func(*config.KafkaSASL)) kafka.Security {
		s := config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "u"}
		mod(&s)
		return kafka.Security{SASL: s}
	}
	cases := []struct {
		name string
		sec  kafka.Security
		want string
	}{
		{"missing password file", scram(func(s *config.KafkaSASL) { s.PasswordFile = filepath.Join(dir, "nope") }), "kafka.sasl.password_file"},
		{"empty password file", scram(func(s *config.KafkaSASL) { s.PasswordFile = empty }), "is empty"},
		{"unset password variable", scram(func(s *config.KafkaSASL) { s.PasswordEnv = "LAMBDAREC_TEST_UNSET_PASSWORD" }), "variable LAMBDAREC_TEST_UNSET_PASSWORD is not set"},
		{"missing CA", kafka.Security{TLS: config.KafkaTLS{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}}, "kafka.tls.ca_file"},
		{"CA not PEM", kafka.Security{TLS: config.KafkaTLS{Enabled: true, CAFile: notPEM}}, "no PEM certificate"},
		{"bad client key pair", kafka.Security{TLS: config.KafkaTLS{Enabled: true, CertFile: notPEM, KeyFile: notPEM}}, "kafka.tls.cert_file"},
		{"unknown mechanism", kafka.Security{SASL: config.KafkaSASL{Mechanism: "GSSAPI"}}, "unsupported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafka.Connect([]string{"127.0.0.1:1"}, tc.sec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Connect: %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error holds file content: %v", err)
			}
		})
	}
}

// TestPasswordFileTrimsNewline: a password file may end in a newline (as
// editors and echo leave it); the newline is not part of the password.
func TestPasswordFileTrimsNewline(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := kafka.Password(config.KafkaSASL{Mechanism: config.SASLPlain, Username: "u", PasswordFile: pw})
	if err != nil || got != "secret" {
		t.Fatalf("Password = %q, %v; want %q", got, err, "secret")
	}
}

// TestMSKIAMMechanism: AWS_MSK_IAM signs with credentials from the AWS chain
// (here the environment); a listener without it refuses the mechanism, and
// the error names kafka.sasl.mechanism.
func TestMSKIAMMechanism(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLAMBDARECTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
	t.Setenv("AWS_REGION", "eu-central-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	kb := kafkatest.Secure()[1].Connect(t) // kfake-tls: SCRAM only
	sec := kb.Security
	sec.SASL = config.KafkaSASL{Mechanism: config.SASLAWSMSKIAM}
	err := metadata(t, kb.Brokers, sec)
	if !errors.Is(err, kerr.UnsupportedSaslMechanism) || !strings.Contains(err.Error(), `kafka.sasl.mechanism "AWS_MSK_IAM"`) {
		t.Fatalf("AWS_MSK_IAM on a SCRAM listener: %v, want an explained UNSUPPORTED_SASL_MECHANISM", err)
	}
	if strings.Contains(err.Error(), "not-a-real-secret") {
		t.Fatalf("error holds the secret key: %v", err)
	}
}

// TestMutualTLS: a broker that requires client certificates accepts the
// pair of kafka.tls.cert_file and key_file, and refuses a client without.
func TestMutualTLS(t *testing.T) {
	ca := kafkatest.NewCA(t)
	srv := ca.ServerTLS(t)
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	srv.ClientCAs = ca.Pool()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.TLS(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	certFile, keyFile := ca.ClientFiles(t)
	sec := kafka.Security{TLS: config.KafkaTLS{Enabled: true, CAFile: ca.File, CertFile: certFile, KeyFile: keyFile}}
	if err := metadata(t, c.ListenAddrs(), sec); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	sec.TLS.CertFile, sec.TLS.KeyFile = "", ""
	if err := metadata(t, c.ListenAddrs(), sec); err == nil {
		t.Fatal("without a client certificate: no error")
	}
}

// TestEveryPasswordMechanism: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 log in
// to a kfake cluster that knows a user for each, with the password from a
// file and from a variable.
func TestEveryPasswordMechanism(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.EnableSASL(),
		kfake.Superuser(config.SASLPlain, "plain-user", "plain-pass"),
		kfake.Superuser(config.SASLScramSHA256, "scram256-user", "scram256-pass"),
		kfake.Superuser(config.SASLScramSHA512, "scram512-user", "scram512-pass"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ mech, user, pass string }{
		{config.SASLPlain, "plain-user", "plain-pass"},
		{config.SASLScramSHA256, "scram256-user", "scram256-pass"},
		{config.SASLScramSHA512, "scram512-user", "scram512-pass"},
	} {
		t.Run(m.mech, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(file, []byte(m.pass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("LAMBDAREC_TEST_MECH_PASSWORD", m.pass)
			for _, s := range []config.KafkaSASL{
				{Mechanism: m.mech, Username: m.user, PasswordFile: file},
				{Mechanism: m.mech, Username: m.user, PasswordEnv: "LAMBDAREC_TEST_MECH_PASSWORD"},
			} {
				if err := metadata(t, c.ListenAddrs(), kafka.Security{SASL: s}); err != nil {
					t.Fatalf("%s with %+v: %v", m.mech, s, err)
				}
			}
		})
	}
}
