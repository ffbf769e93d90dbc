package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/slotproxy/slotproxy/internal/tlsloop"
)

// TLS for clients. gnet has no TLS, so crypto/tls runs on the event loops themselves (internal/tlsloop): a
// goroutine of a Go listener does the handshake on the blocking socket, then the socket joins an event loop,
// where the same tls.Conn decrypts what gnet reads and encrypts what the session writes. The session code is
// unchanged: it reads and writes a tlsloop.Conn, which is a gnet.Conn. Measured before choosing (README): the
// handshake on a goroutine and the records on the loop cost 1.1–1.6× plain TCP's CPU per request; bridging each
// client through a socketpair into gnet cost 2.4–3.3× and hid the client's address.

const (
	tlsHandshakeTimeout = 10 * time.Second
	maxTLSHandshakes    = 256 // in progress at once; more clients wait in the listen backlog
)

// tlsListener accepts TLS clients and hands them to the event loops.
type tlsListener struct {
	s    *Server
	ln   net.Listener
	conf atomic.Pointer[tls.Config] // the certificate, key and CA in force; replaced on reload
	sem  chan struct{}
}

// buildTLS reads the files of c.TLS into a tls.Config; nil without a TLS listen address.
func buildTLS(c *Config) (*tls.Config, error) {
	t := c.TLS
	if t.Listen == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(t.Listen); err != nil {
		return nil, fmt.Errorf("tls.listen: %q is not host:port", t.Listen)
	}
	path := c.resolve
	if t.Cert == "" || t.Key == "" {
		return nil, errors.New("tls: cert and key are needed with tls.listen")
	}
	cert, err := tls.LoadX509KeyPair(path(t.Cert), path(t.Key))
	if err != nil {
		return nil, fmt.Errorf("tls.cert, tls.key: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		DynamicRecordSizingDisabled: true}
	switch t.MinVersion {
	case "", "1.2":
	case "1.3":
		conf.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.min_version: %q: want 1.2 or 1.3", t.MinVersion)
	}
	if len(t.Ciphers) > 0 {
		byName := map[string]uint16{}
		for _, cs := range tls.CipherSuites() {
			byName[cs.Name] = cs.ID
		}
		for _, name := range t.Ciphers {
			id, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("tls.ciphers: %q is not a TLS 1.2 cipher suite Go offers", name)
			}
			conf.CipherSuites = append(conf.CipherSuites, id)
		}
	}
	auth := strings.ToLower(t.AuthClients)
	if t.CA == "" {
		if auth == "yes" || auth == "optional" {
			return nil, errors.New("tls.auth_clients: needs tls.ca")
		}
		return conf, nil
	}
	pem, err := os.ReadFile(path(t.CA))
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.ca: no certificate in %s", t.CA)
	}
	conf.ClientCAs = pool
	switch auth {
	case "", "yes":
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	case "optional":
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case "no":
	default:
		return nil, fmt.Errorf("tls.auth_clients: %q: want yes, optional or no", t.AuthClients)
	}
	return conf, nil
}

// BackendTLSConfig is the client TLS configuration for the nodes, nil when backend_tls is off.
func (c *Config) BackendTLSConfig() (*tls.Config, error) {
	b := c.BackendTLS
	if !b.Enabled {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: b.ServerName}
	if b.CA != "" {
		pem, err := os.ReadFile(c.resolve(b.CA))
		if err != nil {
			return nil, fmt.Errorf("backend_tls.ca: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend_tls.ca: no certificate in %s", b.CA)
		}
	}
	if b.Cert != "" || b.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.resolve(b.Cert), c.resolve(b.Key))
		if err != nil {
			return nil, fmt.Errorf("backend_tls.cert, backend_tls.key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// resolve is a path of the configuration: relative to the file's directory.
func (c *Config) resolve(p string) string {
	if p != "" && !filepath.IsAbs(p) && c.Path != "" {
		return filepath.Join(filepath.Dir(c.Path), p)
	}
	return p
}

// listenTLS starts the TLS listener of the configuration, if it has one.
func (s *Server) listenTLS() error {
	conf, err := buildTLS(s.cfg)
	if err != nil || conf == nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.TLS.Listen)
	if err != nil {
		return err
	}
	t := &tlsListener{s: s, ln: ln, sem: make(chan struct{}, maxTLSHandshakes)}
	t.conf.Store(conf)
	s.tls.Store(t)
	go func() {
		<-s.booted // the loops are there to take the clients
		if s.addr == "" {
			_ = ln.Close()
			return
		}
		s.log.Info("proxy listening for TLS clients", "addr", ln.Addr().String())
		t.accept()
	}()
	return nil
}

// TLSAddr is the TLS listener's address, "" without one.
func (s *Server) TLSAddr() string {
	if t := s.tls.Load(); t != nil {
		return t.ln.Addr().String()
	}
	return ""
}

// reloadTLS takes the certificate, key and CA of c for the next handshakes; the listen address stays.
func (s *Server) reloadTLS(c *Config) error {
	t := s.tls.Load()
	if t == nil {
		return nil
	}
	conf, err := buildTLS(c)
	if err != nil {
		return err
	}
	if conf != nil {
		t.conf.Store(conf)
	}
	return nil
}

func (s *Server) closeTLS() {
	if t := s.tls.Load(); t != nil {
		_ = t.ln.Close()
	}
}

func (t *tlsListener) accept() {
	// Each handshake takes the configuration in force when it starts.
	base := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.conf.Load(), nil }}
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.s.log.Warn("TLS listener: accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.sem <- struct{}{}
		go func() {
			defer func() { <-t.sem }()
			raw := nc.(*net.TCPConn)
			_ = raw.SetNoDelay(true)
			p, err := tlsloop.Handshake(raw, base, false, tlsHandshakeTimeout, nil)
			if err != nil {
				t.s.stats.TLSHandshakeFailures.Add(1)
				t.s.log.Debug("TLS handshake failed", "client", nc.RemoteAddr().String(), "err", err)
				_ = raw.Close()
				return
			}
			if err := tlsloop.Enroll(t.s.eng, nil, p); err != nil {
				t.s.log.Warn("TLS client could not join an event loop", "client", nc.RemoteAddr().String(), "err", err)
			}
		}()
	}
}
