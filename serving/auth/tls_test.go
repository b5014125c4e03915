package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/serving"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lambdarec test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a server certificate for 127.0.0.1 with the given serial to
// certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "lambdarec"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// HTTPS with a generated certificate, API keys on top, and the certificate
// replaced while the server runs.
func TestHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, keysFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "keys")
	ca := newTestCA(t)
	ca.issue(t, 100, certFile, keyFile)
	writeFile(t, keysFile, testKeysFile)

	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(scfg, serving.Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := NewCertReloader(certFile, keyFile, log, srv.Registry())
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTLS(certs.TLSConfig())
	a, err := New(Config{KeysFile: keysFile}, Deps{Log: log, Registerer: srv.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGuard(a)
	base := "https://" + startServer(t, srv)

	// A fresh client per request: each one makes a new handshake.
	client := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	}
	serial := func() int64 {
		t.Helper()
		resp, err := client().Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS == nil {
			t.Fatalf("GET /healthz over https: %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 100 {
		t.Fatalf("serial %d, want 100", got)
	}
	wantError(t, "https without a key", send(t, client(), "GET", base+"/metrics", nil, ""), http.StatusUnauthorized, CodeUnauthorized)
	if r := send(t, client(), "GET", base+"/metrics", bearer(keyAdmin), ""); r.status != http.StatusOK {
		t.Errorf("https /metrics with the admin key: %d %.200s", r.status, r.body)
	}

	// Plain HTTP to the HTTPS port is refused; so is a client that does not
	// trust the CA.
	if resp, err := http.Get("http://" + strings.TrimPrefix(base, "https://") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain http to the https port: %d", resp.StatusCode)
		}
	}
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted CA: %v", err)
	}

	// A new certificate is picked up without a restart.
	time.Sleep(20 * time.Millisecond) // a later modification time
	ca.issue(t, 101, certFile, keyFile)
	deadline := time.Now().Add(10 * time.Second)
	for serial() != 101 {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A broken pair (the key of another certificate) keeps the current one.
	otherCert, otherKey := filepath.Join(dir, "other.crt"), filepath.Join(dir, "other.key")
	ca.issue(t, 102, otherCert, otherKey)
	kb, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyFile, string(kb))
	time.Sleep(1100 * time.Millisecond) // past the once-a-second check
	if got := serial(); got != 101 {
		t.Errorf("serial %d after a broken reload, want 101", got)
	}
	if !strings.Contains(logs.String(), "tls certificate reload failed") {
		t.Errorf("broken pair not logged:\n%s", logs.String())
	}
	m := send(t, client(), "GET", base+"/metrics", bearer(keyAdmin), "")
	if !strings.Contains(m.body, "lambdarec_tls_certificate_ok 0") || !strings.Contains(m.body, "lambdarec_tls_certificate_not_after_seconds") {
		t.Errorf("tls metrics missing:\n%s", m.body)
	}
}

func TestNewCertReloaderRejects(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	if _, err := NewCertReloader("", "", nil, nil); err == nil {
		t.Error("no files accepted")
	}
	if _, err := NewCertReloader(certFile, keyFile, nil, nil); err == nil {
		t.Error("missing files accepted")
	}
	writeFile(t, certFile, "not a certificate")
	writeFile(t, keyFile, "not a key")
	if _, err := NewCertReloader(certFile, keyFile, nil, nil); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Errorf("garbage accepted or error without the file: %v", err)
	}
}
