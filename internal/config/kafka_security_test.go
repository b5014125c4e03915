package config

import (
	"strings"
	"testing"
)

func TestKafkaSecurityFromFileAndEnv(t *testing.T) {
	cfg, err := Load("testdata/kafka_security.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := KafkaTLS{Enabled: true, CAFile: "/etc/lambdarec/kafka-ca.pem", CertFile: "/etc/lambdarec/client.pem", KeyFile: "/etc/lambdarec/client.key", ServerName: "kafka.internal"}
	if cfg.Kafka.TLS != want {
		t.Errorf("tls = %+v, want %+v", cfg.Kafka.TLS, want)
	}
	if cfg.Kafka.SASL.Mechanism != SASLScramSHA512 || cfg.Kafka.SASL.Username != "lambdarec" || cfg.Kafka.SASL.PasswordFile != "/run/secrets/kafka-password" {
		t.Errorf("sasl = %+v", cfg.Kafka.SASL)
	}
	if cfg.Kafka.TLS.InsecureSkipVerify || Default().Kafka.TLS.InsecureSkipVerify {
		t.Error("insecure_skip_verify must be off by default")
	}

	cfg, err = Load("", []string{
		"LAMBDAREC_KAFKA_TLS_ENABLED=true",
		"LAMBDAREC_KAFKA_TLS_CA_FILE=/ca.pem",
		"LAMBDAREC_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
		"LAMBDAREC_KAFKA_SASL_USERNAME=svc",
		"LAMBDAREC_KAFKA_SASL_PASSWORD_ENV=KAFKA_PASSWORD",
		// The test suites' variables name no key and are not errors.
		"LAMBDAREC_TEST_KAFKA=127.0.0.1:19092",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Kafka.TLS.Enabled || cfg.Kafka.TLS.CAFile != "/ca.pem" || cfg.Kafka.SASL.Mechanism != SASLScramSHA256 || cfg.Kafka.SASL.PasswordEnv != "KAFKA_PASSWORD" {
		t.Errorf("env overrides not applied: %+v %+v", cfg.Kafka.TLS, cfg.Kafka.SASL)
	}
	if s := cfg.Kafka.SASL.String(); s != `SCRAM-SHA-256 user "svc"` {
		t.Errorf("String() = %q", s)
	}
}

// A password pasted where a variable name belongs is not echoed back.
func TestKafkaSecurityErrorsHoldNoSecret(t *testing.T) {
	const secret = "hunter2 with spaces!"
	_, err := Load("", []string{
		"LAMBDAREC_KAFKA_SASL_MECHANISM=PLAIN",
		"LAMBDAREC_KAFKA_SASL_USERNAME=u",
		"LAMBDAREC_KAFKA_SASL_PASSWORD_ENV=" + secret,
	})
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.password_env") {
		t.Fatalf("Load: %v, want a kafka.sasl.password_env error", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error holds the value: %v", err)
	}
}
