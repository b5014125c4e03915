package config

import (
	"fmt"
	"regexp"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// KafkaTLS configures TLS to the brokers (kafka.tls).
type KafkaTLS struct {
	// Enabled turns TLS on. Default: false (plaintext).
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	// Default: empty, the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require client authentication (mutual TLS). Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the brokers' certificates are checked against.
	// Default: empty, the host of each broker address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. For experiments
	// only; it makes TLS open to interception. Default: false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// KafkaSASL configures SASL authentication to the brokers (kafka.sasl).
type KafkaSASL struct {
	// Mechanism is empty (no SASL, the default), PLAIN, SCRAM-SHA-256,
	// SCRAM-SHA-512 or AWS_MSK_IAM (credentials from the usual AWS chain).
	Mechanism string `yaml:"mechanism"`
	// Username is the SASL user of PLAIN and SCRAM.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password (a trailing newline is
	// dropped). Default: none.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the password.
	// Default: none. The password itself is never a configuration value, so
	// it cannot end up in a file, a log or --check-config's output.
	PasswordEnv string `yaml:"password_env"`
}

// SASL mechanisms of kafka.sasl.mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLAWSMSKIAM   = "AWS_MSK_IAM"
)

// validateKafkaSecurity checks kafka.tls and kafka.sasl; it reads no file
// (the Kafka client does, when it is built).
func validateKafkaSecurity(k Kafka, bad func(key, format string, args ...any)) {
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		bad("kafka.tls.cert_file", "cert_file and key_file go together")
	}
	if !k.TLS.Enabled && (k.TLS.CAFile != "" || k.TLS.CertFile != "" || k.TLS.ServerName != "" || k.TLS.InsecureSkipVerify) {
		bad("kafka.tls.enabled", "TLS settings are given but kafka.tls.enabled is false")
	}
	s := k.SASL
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.PasswordFile != "" || s.PasswordEnv != "" {
			bad("kafka.sasl.mechanism", "SASL credentials are given but no mechanism")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			bad("kafka.sasl.username", "required by %s", s.Mechanism)
		}
		if (s.PasswordFile == "") == (s.PasswordEnv == "") {
			bad("kafka.sasl.password_file", "%s needs exactly one of password_file and password_env", s.Mechanism)
		}
	case SASLAWSMSKIAM:
		if s.Username != "" || s.PasswordFile != "" || s.PasswordEnv != "" {
			bad("kafka.sasl.mechanism", "AWS_MSK_IAM takes its credentials from the AWS chain, not username or password")
		}
		if !k.TLS.Enabled {
			bad("kafka.tls.enabled", "AWS_MSK_IAM needs TLS (MSK's IAM listener is TLS only)")
		}
	default:
		bad("kafka.sasl.mechanism", "must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM, got %q", s.Mechanism)
	}
	if s.PasswordEnv != "" && !envName.MatchString(s.PasswordEnv) {
		// Not echoed: a password written here by mistake stays out of the error.
		bad("kafka.sasl.password_env", "must name an environment variable (letters, digits, underscores)")
	}
}

// String describes the SASL settings without any secret.
func (s KafkaSASL) String() string {
	if s.Mechanism == "" {
		return "none"
	}
	return fmt.Sprintf("%s user %q", s.Mechanism, s.Username)
}
