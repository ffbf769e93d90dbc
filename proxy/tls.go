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

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/slotproxy/slotproxy/internal/tlsloop"
)

// TLS for clients. gnet has no TLS, so crypto/tls runs on the event loops themselves (internal/tlsloop): the
// TLS port is one of gnet's listeners; a connection accepted there leaves its loop for the handshake, done on
// a goroutine over a duplicate of the blocking socket, and comes back to the same loop, where the same tls.Conn
// decrypts what gnet reads and encrypts what the session writes. The session code is unchanged: it reads and
// writes a tlsloop.Conn, which is a gnet.Conn. Measured before choosing (README): the handshake on a goroutine
// and the records on the loop cost 1.1–1.6× plain TCP's CPU per request; bridging each client through a
// socketpair into gnet cost 2.4–3.3× and hid the client's address.

const (
	tlsHandshakeTimeout = 10 * time.Second
	maxTLSHandshakes    = 256 // in progress at once; a client beyond them is closed at once
)

// tlsListener is the TLS port: one of gnet's listeners, whose new connections leave their loop for the
// handshake, on a goroutine over a duplicate of the socket, and come back to the same loop with the TLS state.
type tlsListener struct {
	s      *Server
	listen string                     // the address gnet listens on: tls.listen, a port 0 made a free port
	addr   string                     // bound address (OnBoot)
	conf   atomic.Pointer[tls.Config] // the certificate, key and CA in force; replaced on reload
	base   *tls.Config                // takes conf at each handshake
	sem    chan struct{}
	shut   atomic.Bool // draining: new TLS clients are closed before their handshake
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

// prepareTLS loads the TLS configuration for the TLS listener, if there is one.
func (s *Server) prepareTLS() error {
	conf, err := buildTLS(s.cfg)
	if err != nil || conf == nil {
		return err
	}
	t := &tlsListener{s: s, listen: s.cfg.TLS.Listen, sem: make(chan struct{}, maxTLSHandshakes)}
	// gnet finds a listener by the address it was given: two "host:0" would be the same one to it.
	if host, port, _ := net.SplitHostPort(t.listen); port == "0" {
		ln, err := net.Listen("tcp", t.listen)
		if err != nil {
			return err
		}
		t.listen = net.JoinHostPort(host, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
	}
	t.conf.Store(conf)
	t.base = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.conf.Load(), nil }}
	s.tls.Store(t)
	return nil
}

// TLSAddr is the TLS listener's address, "" without one.
func (s *Server) TLSAddr() string {
	if t := s.tls.Load(); t != nil {
		<-s.booted
		return t.addr
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

// closeTLS makes the TLS port refuse new clients (a drain): they are closed before their handshake. gnet
// keeps both listeners open while it serves.
func (s *Server) closeTLS() {
	if t := s.tls.Load(); t != nil {
		t.shut.Store(true)
	}
}

// accepts tells whether c came in on the TLS port (its local port is the TLS listener's: the plain port is
// another, whatever the addresses).
func (t *tlsListener) accepts(c gnet.Conn) bool {
	_, port, _ := net.SplitHostPort(sockAddr(c.Fd(), ""))
	_, tlsPort, _ := net.SplitHostPort(t.addr)
	return port != "" && port == tlsPort
}

// handshake takes c, just accepted on the TLS port and about to be closed by its loop, through the TLS
// handshake on a duplicate of its socket, then back onto the same loop.
func (t *tlsListener) handshake(c gnet.Conn) {
	if t.shut.Load() {
		return
	}
	fd, err := unix.Dup(c.Fd())
	if err != nil {
		t.s.log.Warn("TLS client dropped: cannot take its socket", "err", err)
		return
	}
	f := os.NewFile(uintptr(fd), "tls-client")
	nc, err := net.FileConn(f) // a blocking net.Conn on its own descriptor; the loop closes the other one
	f.Close()
	if err != nil {
		t.s.log.Warn("TLS client dropped: cannot take its socket", "err", err)
		return
	}
	raw, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return
	}
	el := c.EventLoop()
	select {
	case t.sem <- struct{}{}:
	default: // too many handshakes under way: this client is refused
		t.s.stats.TLSHandshakeFailures.Add(1)
		raw.Close()
		return
	}
	go func() {
		defer func() { <-t.sem }()
		_ = raw.SetNoDelay(true)
		p, err := tlsloop.Handshake(raw, t.base, false, tlsHandshakeTimeout, nil)
		if err != nil {
			t.s.stats.TLSHandshakeFailures.Add(1)
			t.s.log.Debug("TLS handshake failed", "client", raw.RemoteAddr().String(), "err", err)
			_ = raw.Close()
			return
		}
		if err := tlsloop.Enroll(gnet.Engine{}, el, p); err != nil {
			t.s.log.Warn("TLS client could not join its event loop", "client", raw.RemoteAddr().String(), "err", err)
		}
	}()
}
