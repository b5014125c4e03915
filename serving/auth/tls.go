package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// certCheckEvery bounds how often a handshake looks at the certificate
// files' modification times.
const certCheckEvery = time.Second

// CertReloader serves a certificate and its key from PEM files and re-reads
// them when either file changes, checked at most once a second on a TLS
// handshake. A pair that does not load (half written, key not matching)
// keeps the previous certificate in force and is logged at most once a
// minute; it is retried on later handshakes.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	ok                prometheus.Gauge
	notAfter          prometheus.Gauge

	mu         sync.Mutex
	cert       *tls.Certificate
	certMod    time.Time
	keyMod     time.Time
	checked    time.Time
	lastErr    string
	lastLogged time.Time
}

// NewCertReloader loads the pair; a pair that does not load is an error.
// reg (optional) receives lambdarec_tls_certificate_ok and
// lambdarec_tls_certificate_not_after_seconds.
func NewCertReloader(certFile, keyFile string, log *slog.Logger, reg prometheus.Registerer) (*CertReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: certificate and key files are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CertReloader{
		certFile: certFile, keyFile: keyFile, log: log,
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_tls_certificate_ok",
			Help: "1 when the last load of the HTTPS certificate files succeeded; 0 when it failed and the previous certificate stays in force.",
		}),
		notAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_tls_certificate_not_after_seconds",
			Help: "Expiry (Unix time) of the HTTPS certificate in force.",
		}),
	}
	if reg != nil {
		for _, m := range []prometheus.Collector{c.ok, c.notAfter} {
			if err := reg.Register(m); err != nil {
				return nil, fmt.Errorf("register tls metrics: %w", err)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// TLSConfig returns a server configuration that serves the reloaded
// certificate (TLS 1.2 or newer, HTTP/2 and HTTP/1.1).
func (c *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.GetCertificate,
	}
}

// GetCertificate is tls.Config.GetCertificate: the certificate in force,
// reloaded first when its files changed.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= certCheckEvery {
		c.checked = now
		if c.changed() {
			if err := c.load(); err != nil {
				c.ok.Set(0)
				if msg := err.Error(); msg != c.lastErr || now.Sub(c.lastLogged) >= errorLogEvery {
					c.log.Error("tls certificate reload failed; the previous certificate stays in force", "cert_file", c.certFile, "key_file", c.keyFile, "err", err)
					c.lastErr, c.lastLogged = msg, now
				}
			}
		}
	}
	return c.cert, nil
}

// changed reports whether either file's modification time or size differs
// from the loaded pair's.
func (c *CertReloader) changed() bool {
	cm, err1 := modTime(c.certFile)
	km, err2 := modTime(c.keyFile)
	if err1 != nil || err2 != nil {
		return true // load reports it
	}
	return !cm.Equal(c.certMod) || !km.Equal(c.keyMod)
}

func modTime(path string) (time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// load reads the pair; c.mu is held.
func (c *CertReloader) load() error {
	cm, err := modTime(c.certFile)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	km, err := modTime(c.keyFile)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load tls certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	reloaded := c.cert != nil
	c.cert, c.certMod, c.keyMod, c.lastErr = &cert, cm, km, ""
	c.ok.Set(1)
	if cert.Leaf != nil {
		c.notAfter.Set(float64(cert.Leaf.NotAfter.Unix()))
	}
	if reloaded {
		var notAfter time.Time
		if cert.Leaf != nil {
			notAfter = cert.Leaf.NotAfter
		}
		c.log.Info("tls certificate reloaded", "cert_file", c.certFile, "not_after", notAfter)
	}
	return nil
}
