package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/lambdarec/lambdarec/internal/config"
)

// Security is how a client protects its connections to the brokers: the
// kafka.tls and kafka.sasl sections. Every role builds its clients through
// Connect, so that all of them reach a secured cluster the same way.
type Security struct {
	TLS  config.KafkaTLS
	SASL config.KafkaSASL
}

// SecurityOf returns the security settings of the kafka section.
func SecurityOf(k config.Kafka) Security { return Security{TLS: k.TLS, SASL: k.SASL} }

// Connect returns a client for brokers, secured by sec, with NewClient's
// defaults followed by opts. Files named by sec (CA, client certificate,
// password) are read now, so a missing or bad one is an error here; the
// password is read again for each new connection, so a rotated secret is
// picked up without a restart. No error or log line holds a secret.
func Connect(brokers []string, sec Security, opts ...kgo.Opt) (*kgo.Client, error) {
	secOpts, err := sec.Opts()
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	return NewClient(brokers, append(secOpts, opts...)...)
}

// Opts returns the franz-go options of sec: a TLS dialer and a SASL
// mechanism, or none for a plaintext, unauthenticated connection.
func (sec Security) Opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if sec.TLS.Enabled {
		tc, err := tlsConfig(sec.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if sec.SASL.Mechanism != "" {
		m, err := mechanism(sec.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func tlsConfig(c config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // opt-in, documented as unsafe
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate in it", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func mechanism(s config.KafkaSASL) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512:
		// Fail now on a missing password rather than at the first dial.
		if _, err := password(s); err != nil {
			return nil, err
		}
	}
	switch s.Mechanism {
	case config.SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			pw, err := password(s)
			return plain.Auth{User: s.Username, Pass: pw}, err
		}), nil
	case config.SASLScramSHA256, config.SASLScramSHA512:
		auth := func(context.Context) (scram.Auth, error) {
			pw, err := password(s)
			return scram.Auth{User: s.Username, Pass: pw}, err
		}
		if s.Mechanism == config.SASLScramSHA256 {
			return scram.Sha256(auth), nil
		}
		return scram.Sha512(auth), nil
	case config.SASLAWSMSKIAM:
		awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
		if err != nil {
			return nil, fmt.Errorf("kafka.sasl AWS_MSK_IAM: load AWS configuration: %w", err)
		}
		return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
			creds, err := awsCfg.Credentials.Retrieve(ctx)
			if err != nil {
				return aws.Auth{}, fmt.Errorf("kafka.sasl AWS_MSK_IAM: AWS credentials: %w", err)
			}
			return aws.Auth{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey, SessionToken: creds.SessionToken}, nil
		}), nil
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: unsupported %q", s.Mechanism)
	}
}

// password reads the SASL password from its file or variable. Errors name
// where it was looked for, never what was found.
func password(s config.KafkaSASL) (string, error) {
	var pw string
	switch {
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("kafka.sasl.password_file %s is empty", s.PasswordFile)
		}
	case s.PasswordEnv != "":
		pw = os.Getenv(s.PasswordEnv)
		if pw == "" {
			return "", fmt.Errorf("kafka.sasl.password_env: variable %s is not set or empty", s.PasswordEnv)
		}
	default:
		return "", errors.New("kafka.sasl: no password_file or password_env")
	}
	return pw, nil
}

// Explain adds to a connection error what in the kafka section most likely
// causes it: a wrong password, a CA that did not sign the broker's
// certificate, TLS on one side only. Other errors are returned as they are.
func Explain(err error, sec Security) error {
	if err == nil {
		return nil
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var recordHeader tls.RecordHeaderError
	var firstEOF *kgo.ErrFirstReadEOF
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("%w (the brokers refused kafka.sasl.username %q with the password of %s: check both)", err, sec.SASL.Username, passwordSource(sec.SASL))
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("%w (the listener does not accept kafka.sasl.mechanism %q)", err, sec.SASL.Mechanism)
	case errors.As(err, &unknownCA):
		ca := "the system's roots"
		if sec.TLS.CAFile != "" {
			ca = "kafka.tls.ca_file " + sec.TLS.CAFile
		}
		return fmt.Errorf("%w (the broker's certificate is not signed by a CA of %s)", err, ca)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (set kafka.tls.server_name to a name the broker's certificate holds)", err)
	case errors.As(err, &recordHeader):
		return fmt.Errorf("%w (kafka.tls.enabled is true but the broker's listener does not speak TLS)", err)
	case errors.As(err, &firstEOF) && !sec.TLS.Enabled:
		// franz-go says which first read failed; add the keys to change.
		return fmt.Errorf("%w (if the listener uses TLS, set kafka.tls.enabled; if it uses SASL, set kafka.sasl)", err)
	case errors.As(err, &firstEOF):
		return fmt.Errorf("%w (check kafka.tls.enabled and kafka.sasl against the listener)", err)
	case strings.Contains(err.Error(), "tls endpoint") && !sec.TLS.Enabled:
		return fmt.Errorf("%w (set kafka.tls.enabled)", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || isClosedConn(err):
		switch {
		case !sec.TLS.Enabled && sec.SASL.Mechanism == "":
			return fmt.Errorf("%w (the broker closed the connection: if its listener uses TLS, set kafka.tls.enabled; if it uses SASL, set kafka.sasl)", err)
		case !sec.TLS.Enabled:
			return fmt.Errorf("%w (the broker closed the connection: if its listener uses TLS, set kafka.tls.enabled; else check kafka.sasl's mechanism, username and password)", err)
		case sec.SASL.Mechanism == "":
			return fmt.Errorf("%w (the broker closed the connection: if its listener uses SASL, set kafka.sasl)", err)
		default:
			return fmt.Errorf("%w (the broker closed the connection: check kafka.sasl's mechanism, username and password)", err)
		}
	}
	return err
}

func isClosedConn(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset by peer")
}

func passwordSource(s config.KafkaSASL) string {
	if s.PasswordFile != "" {
		return "kafka.sasl.password_file " + s.PasswordFile
	}
	return "kafka.sasl.password_env " + s.PasswordEnv
}

// Check asks the brokers for their metadata, the first request of every
// role, and returns the explained error: a refused login or a TLS mismatch
// shows up here at start instead of as a member that never joins.
func Check(ctx context.Context, cl *kgo.Client, sec Security) error {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none: only brokers
	if _, err := req.RequestWith(ctx, cl); err != nil {
		return fmt.Errorf("kafka metadata: %w", Explain(err, sec))
	}
	return nil
}
