// Command kafkatool is the Go half of infra/kafka/kafka.sh, the Apache Kafka
// broker of the test suites: it makes the throw-away CA and server
// certificate of the broker's TLS listener (never committed), and waits
// until every listener answers a metadata request through lambdarec's own
// client construction (internal/kafka.Connect), SCRAM and TLS included.
//
//	kafkatool certs -dir DIR
//	kafkatool wait -plain ADDR -scram ADDR -tls ADDR -user U -password-file F -ca FILE [-timeout 2m]
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kafkatool certs|wait [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "certs":
		err = certsCmd(os.Args[2:])
	case "wait":
		err = waitCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkatool:", err)
		os.Exit(1)
	}
}

// certsCmd writes ca.pem (the CA certificate clients trust) and server.pem
// (the broker's PKCS#8 key followed by its certificate chain: a Kafka PEM
// keystore) for 127.0.0.1 and localhost into dir.
func certsCmd(args []string) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	dir := fs.String("dir", "", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("certs: -dir is required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lambdarec test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("certs: CA certificate: %w", err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certs: server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("certs: server certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return fmt.Errorf("certs: server key: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	var keystore []byte
	keystore = append(keystore, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	keystore = append(keystore, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})...)
	keystore = append(keystore, caPEM...)
	if err := os.WriteFile(filepath.Join(*dir, "ca.pem"), caPEM, 0o644); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "server.pem"), keystore, 0o600); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// waitCmd polls the three listeners until each answers a metadata request
// or the timeout passes.
func waitCmd(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	plainAddr := fs.String("plain", "", "PLAINTEXT listener")
	scramAddr := fs.String("scram", "", "SASL_PLAINTEXT listener (SCRAM-SHA-512)")
	tlsAddr := fs.String("tls", "", "SASL_SSL listener (SCRAM-SHA-512 over TLS)")
	user := fs.String("user", "", "SCRAM user")
	pwFile := fs.String("password-file", "", "file holding the SCRAM password")
	ca := fs.String("ca", "", "CA of the TLS listener")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scram := config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: *user, PasswordFile: *pwFile}
	targets := []struct {
		name string
		addr string
		sec  kafka.Security
	}{
		{"plaintext", *plainAddr, kafka.Security{}},
		{"scram", *scramAddr, kafka.Security{SASL: scram}},
		{"tls", *tlsAddr, kafka.Security{SASL: scram, TLS: config.KafkaTLS{Enabled: true, CAFile: *ca}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, tg := range targets {
		if tg.addr == "" {
			continue
		}
		if err := waitFor(ctx, tg.addr, tg.sec); err != nil {
			return fmt.Errorf("wait for the %s listener %s: %w", tg.name, tg.addr, err)
		}
	}
	return nil
}

func waitFor(ctx context.Context, addr string, sec kafka.Security) error {
	cl, err := kafka.Connect([]string{addr}, sec, kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req := kmsg.NewPtrMetadataRequest()
		resp, err := req.RequestWith(rctx, cl)
		cancel()
		if err == nil && len(resp.Brokers) > 0 {
			return nil
		}
		if err == nil {
			err = errors.New("no broker in the metadata yet")
		}
		last = err
		select {
		case <-ctx.Done():
			return kafka.Explain(last, sec)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
