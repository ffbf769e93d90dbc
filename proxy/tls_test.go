package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// clientTLS is a client's TLS configuration for the files: the CA to trust and, if withCert, the client
// certificate.
func clientTLS(t *testing.T, f *redistest.TLSFiles, withCert bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if withCert {
		cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf
}

// TestTLSClients: the proxy's TLS port, with client certificates required, serves go-redis (pipelines, a
// 1 MiB value across many records, RESP3), redis-cli --tls and node-redis over TLS; refuses a client without
// a certificate, a plain-TCP client (counted) and, with min_version 1.3, a TLS 1.2 client; shows the TLS
// client's real address in CLIENT LIST; applies protected mode and ACL users to TLS clients alike; and takes
// a new certificate on reload for the next handshakes while an open TLS client goes on.
func TestTLSClients(t *testing.T) {
	_, _, cl := shared(t)
	f := redistest.MakeTLSFiles(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.TLS = proxy.TLS{Listen: "127.0.0.1:0", Cert: f.ServerCert, Key: f.ServerKey, CA: f.CA}
		c.Users = []string{"user app on >app-secret ~* &* +@all"}
	})
	tlsAddr := srv.TLSAddr()
	if tlsAddr == "" {
		t.Fatal("no TLS listener")
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: clientTLS(t, f, true)})
	defer c.Close()
	big := strings.Repeat("x", 1<<20)
	if err := c.Set(ctx, "tls:big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "tls:big").Result(); err != nil || got != big {
		t.Fatalf("GET of 1 MiB over TLS: %d bytes, %v", len(got), err)
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range 1000 {
			p.Incr(ctx, "tls:n")
		}
		return nil
	})
	if err != nil || len(cmds) != 1000 {
		t.Fatalf("pipeline of 1000 over TLS: %v", err)
	}
	list, err := c.ClientList(ctx).Result()
	if err != nil || !strings.Contains(list, "laddr="+tlsAddr) {
		t.Errorf("CLIENT LIST over TLS: %q %v (want laddr=%s)", list, err, tlsAddr)
	}

	host, port, _ := net.SplitHostPort(tlsAddr)
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "--tls", "--cacert", f.CA, "--cert", f.ClientCert,
		"--key", f.ClientKey, "--user", "app", "--pass", "app-secret", "--no-auth-warning", "ACL", "WHOAMI").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "app" {
		t.Errorf("redis-cli --tls as app: %q %v", out, err)
	}
	script := "const { createClient } = require('redis'); const fs = require('fs');" +
		"(async () => { const c = await createClient({ socket: { host: '" + host + "', port: " + port + ", tls: true," +
		" ca: fs.readFileSync('" + f.CA + "'), cert: fs.readFileSync('" + f.ClientCert + "'), key: fs.readFileSync('" +
		f.ClientKey + "') } }).connect(); await c.set('tls:node', 'v'); console.log(await c.get('tls:node'));" +
		" await c.quit(); })().catch(e => { console.error(e); process.exit(1); });"
	node := exec.Command("node", "-e", script)
	node.Dir = "testdata/clients"
	if out, err := node.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "v" {
		t.Errorf("node-redis over TLS: %q %v", out, err)
	}

	// Refusals.
	if err := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: clientTLS(t, f, false), MaxRetries: -1}).Ping(ctx).Err(); err == nil {
		t.Error("a TLS client without a certificate was served")
	}
	failures := srv.Stats().TLSHandshakeFailures.Load()
	if got, _, err := rawDo(tlsAddr, 3*time.Second, "PING"); err == nil && strings.Contains(string(got), "PONG") {
		t.Errorf("a plain client on the TLS port got %q", got)
	}
	eventually(t, 5*time.Second, "the failed handshakes counted", func() bool {
		return srv.Stats().TLSHandshakeFailures.Load() > failures
	})
	plain := string(mustDo(t, addr, "PING"))
	if plain != "+PONG\r\n" {
		t.Errorf("the plain port beside the TLS one: %q", plain)
	}

	// A new certificate applies to the next handshakes; the open client goes on.
	newCert, newKey := f.Issue(t, "server2", 99)
	cfg := srv.Config()
	cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.MinVersion = newCert, newKey, "1.3"
	srv.Reload(&cfg)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("the open TLS client after the reload: %v", err)
	}
	conn, err := tls.Dial("tcp", tlsAddr, clientTLS(t, f, true))
	if err != nil {
		t.Fatal(err)
	}
	if serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); serial != 99 {
		t.Errorf("after the reload the server shows certificate serial %d, want 99", serial)
	}
	conn.Close()
	old := clientTLS(t, f, true)
	old.MaxVersion = tls.VersionTLS12
	if conn, err := tls.Dial("tcp", tlsAddr, old); err == nil {
		conn.Close()
		t.Error("a TLS 1.2 client was served with min_version 1.3")
	}
}
