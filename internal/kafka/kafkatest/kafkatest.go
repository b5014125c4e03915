// Package kafkatest owns the brokers the Kafka-facing test suites run
// against: the embedded kfake broker always, and the Apache Kafka broker of
// infra/kafka/kafka.sh when LAMBDAREC_TEST_KAFKA names it (CI sets it). A
// suite runs once per broker as subtests named after it; each run creates
// its own uniquely named topics and groups, so runs against the one shared
// Apache Kafka broker never see each other's records.
//
// What differs on a real broker is handled here, not skipped: topics are
// created explicitly (the broker has auto-creation off, as production
// clusters do) and waited for until every partition has a leader in the
// metadata, as creation propagates asynchronously; names are unique per run
// because the broker outlives the test process (a group of an earlier run
// would otherwise rebalance with this one's members).
package kafkatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
)

// The variables infra/kafka/kafka.sh env prints.
const (
	EnvPlain    = "LAMBDAREC_TEST_KAFKA"
	EnvScram    = "LAMBDAREC_TEST_KAFKA_SCRAM"
	EnvUser     = "LAMBDAREC_TEST_KAFKA_USER"
	EnvPassword = "LAMBDAREC_TEST_KAFKA_PASSWORD"
	EnvTLS      = "LAMBDAREC_TEST_KAFKA_TLS"
	EnvCA       = "LAMBDAREC_TEST_KAFKA_CA"
)

// Target is a broker a suite runs against.
type Target struct {
	// Name names the subtest: "kfake", "kafka" (Apache Kafka, PLAINTEXT),
	// and for Secure: "kfake-scram", "kfake-tls", "kafka-scram", "kafka-tls".
	Name string
	// Real is true for the Apache Kafka broker.
	Real bool
	// start connects to the broker (starting it for kfake).
	start func(t testing.TB) *Broker
}

// Broker is a target a test has connected to.
type Broker struct {
	Name string
	Real bool
	// Brokers are the seed brokers and Security how to reach them.
	Brokers  []string
	Security kafka.Security
	// Cluster is the kfake cluster, nil for Apache Kafka.
	Cluster *kfake.Cluster
}

// Real reports whether LAMBDAREC_TEST_KAFKA names an Apache Kafka broker.
func Real() bool { return os.Getenv(EnvPlain) != "" }

// Brokers returns the targets of a suite: kfake always, Apache Kafka's
// PLAINTEXT listener when LAMBDAREC_TEST_KAFKA is set.
func Brokers() []Target {
	ts := []Target{{Name: "kfake", start: startKfake}}
	if addr := os.Getenv(EnvPlain); addr != "" {
		ts = append(ts, Target{Name: "kafka", Real: true, start: func(t testing.TB) *Broker {
			return &Broker{Name: "kafka", Real: true, Brokers: []string{addr}}
		}})
	}
	return ts
}

// Secure returns the authenticated targets: kfake with SCRAM-SHA-512, and
// with SCRAM-SHA-512 over TLS, always; Apache Kafka's SASL_PLAINTEXT and
// SASL_SSL listeners when LAMBDAREC_TEST_KAFKA_SCRAM and _TLS are set.
func Secure() []Target {
	ts := []Target{
		{Name: "kfake-scram", start: func(t testing.TB) *Broker { return startSecureKfake(t, false) }},
		{Name: "kfake-tls", start: func(t testing.TB) *Broker { return startSecureKfake(t, true) }},
	}
	scramAddr, tlsAddr := os.Getenv(EnvScram), os.Getenv(EnvTLS)
	user, pwEnv, ca := os.Getenv(EnvUser), EnvPassword, os.Getenv(EnvCA)
	sasl := config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: user, PasswordEnv: pwEnv}
	if scramAddr != "" {
		ts = append(ts, Target{Name: "kafka-scram", Real: true, start: func(t testing.TB) *Broker {
			return &Broker{Name: "kafka-scram", Real: true, Brokers: []string{scramAddr}, Security: kafka.Security{SASL: sasl}}
		}})
	}
	if tlsAddr != "" {
		ts = append(ts, Target{Name: "kafka-tls", Real: true, start: func(t testing.TB) *Broker {
			return &Broker{Name: "kafka-tls", Real: true, Brokers: []string{tlsAddr},
				Security: kafka.Security{SASL: sasl, TLS: config.KafkaTLS{Enabled: true, CAFile: ca}}}
		}})
	}
	return ts
}

// Run runs fn as one subtest per target of Brokers.
func Run(t *testing.T, fn func(t *testing.T, b *Broker)) {
	t.Helper()
	RunTargets(t, Brokers(), fn)
}

// RunTargets runs fn as one subtest per target.
func RunTargets(t *testing.T, targets []Target, fn func(t *testing.T, b *Broker)) {
	t.Helper()
	for _, tg := range targets {
		t.Run(tg.Name, func(t *testing.T) {
			fn(t, tg.Connect(t))
		})
	}
}

// Connect connects to the target, starting it for kfake (stopped when t
// ends).
func (tg Target) Connect(t testing.TB) *Broker {
	t.Helper()
	return tg.start(t)
}

func startKfake(t testing.TB) *Broker {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Partitions: 1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &Broker{Name: "kfake", Brokers: []string{b.Addr()}, Cluster: b.Cluster()}
}

// kfake's SCRAM user; the password travels in an environment variable of
// the test process, as kafka.sasl.password_env reads it.
const (
	kfakeUser     = "lambdarec"
	kfakePassword = "kfake-secret"
	// EnvKfakePassword holds the password of the kfake SCRAM user.
	EnvKfakePassword = "LAMBDAREC_TEST_KFAKE_PASSWORD"
)

func startSecureKfake(t testing.TB, withTLS bool) *Broker {
	t.Helper()
	if err := os.Setenv(EnvKfakePassword, kfakePassword); err != nil {
		t.Fatal(err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1), kfake.Ports(0),
		kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA512, kfakeUser, kfakePassword),
	}
	name := "kfake-scram"
	sec := kafka.Security{SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: kfakeUser, PasswordEnv: EnvKfakePassword}}
	if withTLS {
		name = "kfake-tls"
		ca := NewCA(t)
		opts = append(opts, kfake.TLS(ca.ServerTLS(t)))
		sec.TLS = config.KafkaTLS{Enabled: true, CAFile: ca.File}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &Broker{Name: name, Brokers: c.ListenAddrs(), Security: sec, Cluster: c}
}

// Kafka returns the kafka configuration section for this broker: its seed
// brokers and security, with topic and dlqTopic.
func (b *Broker) Kafka(topic, dlqTopic string, partitions int) config.Kafka {
	k := config.Default().Kafka
	k.Brokers = append([]string(nil), b.Brokers...)
	k.TLS, k.SASL = b.Security.TLS, b.Security.SASL
	k.Topic, k.DLQTopic, k.Partitions = topic, dlqTopic, partitions
	return k
}

// Client returns a client of this broker with opts, closed when the test
// ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafka.Connect(b.Brokers, b.Security, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

var seq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Unique returns a name unique to this test run for a topic or group:
// base, the test's name and a random suffix (Kafka topic names are at most
// 249 characters of [a-zA-Z0-9._-]).
func (b *Broker) Unique(t testing.TB, base string) string {
	test := unsafeName.ReplaceAllString(t.Name(), "_")
	if len(test) > 80 {
		h := fnv.New32a()
		h.Write([]byte(test))
		test = fmt.Sprintf("%s-%08x", test[:70], h.Sum32())
	}
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%s.%s.%x%d", base, strings.ToLower(test), r, seq.Add(1))
}

// Topics creates topics with partitions partitions each and waits until
// every partition has a leader in the broker's metadata (topic creation
// propagates asynchronously on Apache Kafka).
func (b *Broker) Topics(t testing.TB, partitions int, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kafka.Connect(b.Brokers, b.Security)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, int32(partitions), topics...); err != nil {
		t.Fatalf("create topics on %s: %v", b.Name, kafka.Explain(err, b.Security))
	}
	if err := WaitTopics(ctx, cl, partitions, topics...); err != nil {
		t.Fatalf("%s: %v", b.Name, err)
	}
}

// WaitTopics waits until each topic has partitions partitions, each with a
// leader, in the metadata cl sees.
func WaitTopics(ctx context.Context, cl *kgo.Client, partitions int, topics ...string) error {
	adm := kadm.NewClient(cl)
	for {
		md, err := adm.Metadata(ctx, topics...)
		ready := err == nil
		if ready {
			for _, name := range topics {
				td, ok := md.Topics[name]
				if !ok || td.Err != nil || len(td.Partitions) != partitions {
					ready = false
					break
				}
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v not ready with %d partitions: %v (last error %v)", topics, partitions, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CA is a throw-away certificate authority of a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// File is the CA certificate as a PEM file, for kafka.tls.ca_file.
	File string
}

// NewCA makes a CA whose PEM file lives in the test's temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "lambdarec test CA " + t.Name()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, File: file}
}

// ServerTLS returns a server TLS configuration with a certificate for
// 127.0.0.1 and localhost signed by the CA.
func (ca *CA) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// ClientFiles writes a client certificate signed by the CA and its key as
// PEM files, for kafka.tls.cert_file and key_file.
func (ca *CA) ClientFiles(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "lambdarec client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Pool returns a certificate pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
