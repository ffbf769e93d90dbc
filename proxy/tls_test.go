package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// TestTLSBothSides: a real 3+3 cluster with TLS on every node (tls-port, tls-cluster, tls-replication, client
// certificates required), the proxy in front of it with TLS towards its clients and towards the nodes, seeded
// with the nodes' TLS addresses. go-redis over TLS writes and reads keys of every shard; every connection the
// proxy holds to a node is on the node's TLS port (the nodes' CLIENT LIST); redis-benchmark --tls runs through
// it; a master SIGKILLed over TLS fails over and its shard takes writes again.
func TestTLSBothSides(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	f := redistest.MakeTLSFiles(t)
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1, TLS: f})
	_, srv := startProxyOpt(t, cl.TLSAddrs(), false, func(c *proxy.Config) {
		c.TLS = proxy.TLS{Listen: "127.0.0.1:0", Cert: f.ServerCert, Key: f.ServerKey, CA: f.CA}
		c.BackendTLS = proxy.BackendTLS{Enabled: true, CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey}
	})
	snap := snapshotOf(srv)
	for _, n := range snap.Nodes {
		if !slices.Contains(cl.TLSAddrs(), n.Addr) {
			t.Fatalf("the slot map lists %s, not a TLS address of the cluster %v", n.Addr, cl.TLSAddrs())
		}
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.TLSAddr(), TLSConfig: clientTLS(t, f, true), MaxRetries: -1})
	defer c.Close()
	var kv []any
	var keys []string
	for i := range 300 {
		k := fmt.Sprintf("tls2:%d", i)
		keys = append(keys, k)
		kv = append(kv, k, i)
	}
	if err := c.MSet(ctx, kv...).Err(); err != nil {
		t.Fatal(err)
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil || len(vals) != 300 || vals[299] != "299" {
		t.Fatalf("MGET over TLS on both sides: %v %v", vals, err)
	}
	for _, n := range cl.Nodes {
		list, err := n.DoString("CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			if strings.Contains(line, "cmd=client|list") || strings.Contains(line, "flags=S") || strings.Contains(line, "flags=M") {
				continue // this query's own connection; replication links
			}
			if !strings.Contains(line, "laddr="+n.TLSAddr+" ") {
				t.Errorf("%s has a client that is not on its TLS port: %s", n.Addr, line)
			}
		}
	}

	host, port, _ := net.SplitHostPort(srv.TLSAddr())
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "--tls", "--cacert", f.CA, "--cert", f.ClientCert,
		"--key", f.ClientKey, "-n", "20000", "-c", "20", "-P", "4", "-t", "set,get", "-q", "--csv").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"SET"`) || !strings.Contains(string(out), `"GET"`) {
		t.Errorf("redis-benchmark --tls through the proxy: %v\n%s", err, out)
	}
	t.Logf("redis-benchmark --tls, TLS on both sides:\n%s", out)

	eventually(t, 20*time.Second, "the slot map lists the replicas", func() bool {
		srv.Topology().RequestRefresh()
		snap = snapshotOf(srv)
		return len(snap.Shards[0].Replicas) > 0
	})
	victim := nodeByTLSAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
	replica := nodeByTLSAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	key := keyInShard(snap, 0)
	victim.Kill()
	eventually(t, 20*time.Second, "the replica promoted", func() bool { return isMaster(replica) })
	eventually(t, 10*time.Second, "writes to the failed-over shard through TLS", func() bool {
		return c.Set(ctx, key, "after", 0).Err() == nil
	})
	if got, err := c.Get(ctx, key).Result(); err != nil || got != "after" {
		t.Errorf("GET after the failover: %q %v", got, err)
	}
}

func nodeByTLSAddr(cl *redistest.Cluster, addr string) *redistest.Server {
	for _, n := range cl.Nodes {
		if n.TLSAddr == addr {
			return n
		}
	}
	return nil
}

// BenchmarkTLSBothSides runs redis-benchmark (SET and GET, 50 clients, -P 1 and -P 16) through two proxies in
// front of one 3-master TLS cluster, in interleaved rounds: one in plain TCP on both sides (the nodes' plain
// ports), one with TLS on both sides. It reports each side's median requests/s and the proxy process's CPU
// per request (the benchmark's own process holds only the proxies; redis-benchmark and the nodes are
// children or strangers): run with -bench TLSBothSides -benchtime 1x.
func BenchmarkTLSBothSides(b *testing.B) {
	f := redistest.MakeTLSFiles(b)
	cl := redistest.StartCluster(b, redistest.ClusterOptions{Masters: 3, TLS: f})
	plainAddr := startProxy(b, cl.Addrs(), func(c *proxy.Config) { c.EventLoops = 1 })
	_, tlsSrv := startProxyOpt(b, cl.TLSAddrs(), false, func(c *proxy.Config) {
		c.EventLoops = 1
		c.TLS = proxy.TLS{Listen: "127.0.0.1:0", Cert: f.ServerCert, Key: f.ServerKey}
		c.BackendTLS = proxy.BackendTLS{Enabled: true, CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey}
	})
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	run := func(addr string, tlsArgs bool, test string, pipe int) (rps, usPerReq float64) {
		host, port, _ := net.SplitHostPort(addr)
		const n = 200000
		args := []string{"-h", host, "-p", port, "-c", "50", "-n", strconv.Itoa(n), "-P", strconv.Itoa(pipe),
			"-t", test, "-r", "100000", "-d", "64", "--csv"}
		if tlsArgs {
			args = append(args, "--tls", "--cacert", f.CA)
		}
		before := cpu()
		out, err := exec.Command("redis-benchmark", args...).CombinedOutput()
		used := cpu() - before
		if err != nil {
			b.Fatalf("redis-benchmark %v: %v\n%s", args, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if fields := strings.Split(line, ","); len(fields) > 1 && strings.HasPrefix(fields[0], `"`+strings.ToUpper(test)) {
				rps, _ = strconv.ParseFloat(strings.Trim(fields[1], `"`), 64)
			}
		}
		return rps, float64(used.Microseconds()) / n
	}
	type key struct {
		side, test string
		pipe       int
	}
	rps, cpus := map[key][]float64{}, map[key][]float64{}
	b.ResetTimer()
	for round := range 5 {
		for _, test := range []string{"set", "get"} {
			for _, pipe := range []int{1, 16} {
				sides := []string{"plain", "tls"}
				if round%2 == 1 {
					sides = []string{"tls", "plain"}
				}
				for _, side := range sides {
					addr := plainAddr
					if side == "tls" {
						addr = tlsSrv.TLSAddr()
					}
					r, c := run(addr, side == "tls", test, pipe)
					k := key{side, test, pipe}
					rps[k], cpus[k] = append(rps[k], r), append(cpus[k], c)
				}
			}
		}
	}
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	for _, test := range []string{"set", "get"} {
		for _, pipe := range []int{1, 16} {
			p, t := key{"plain", test, pipe}, key{"tls", test, pipe}
			b.Logf("%s -P %d: plain %.0f req/s %.2f µs CPU/req, TLS both sides %.0f req/s %.2f µs CPU/req: "+
				"throughput %.2f×, CPU per request %.2f×", test, pipe, median(rps[p]), median(cpus[p]), median(rps[t]),
				median(cpus[t]), median(rps[t])/median(rps[p]), median(cpus[t])/median(cpus[p]))
		}
	}
}

// recordingConn keeps every byte read from the socket, to look at the TLS records themselves.
type recordingConn struct {
	net.Conn
	got []byte
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got = append(r.got, p[:n]...)
	return n, err
}

// TestTLSCloseNotify: a TLS client that sends QUIT gets +OK, then the proxy's close_notify alert (the last
// record before the connection ends is an alert: TLS 1.2, where alerts are not disguised as data), then EOF.
func TestTLSCloseNotify(t *testing.T) {
	_, _, cl := shared(t)
	f := redistest.MakeTLSFiles(t)
	_, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.TLS = proxy.TLS{Listen: "127.0.0.1:0", Cert: f.ServerCert, Key: f.ServerKey}
	})
	raw, err := net.Dial("tcp", srv.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{Conn: raw}
	conf := clientTLS(t, f, false)
	conf.MaxVersion = tls.VersionTLS12
	c := tls.Client(rec, conf)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf) // crypto/tls may read the alert with the reply and say EOF at once
	if err != nil && !errors.Is(err, io.EOF) || string(buf[:n]) != "+OK\r\n" {
		t.Fatalf("QUIT over TLS: %q %v", buf[:n], err)
	}
	if err == nil {
		if _, err := c.Read(buf); !errors.Is(err, io.EOF) {
			t.Errorf("after QUIT: %v, want EOF", err)
		}
	}
	// Walk the records: type (1 byte), version (2), length (2), body.
	var last byte
	for b := rec.got; len(b) >= 5; {
		n := int(b[3])<<8 | int(b[4])
		last = b[0]
		if len(b) < 5+n {
			break
		}
		b = b[5+n:]
	}
	if last != 21 { // alert
		t.Errorf("the last record before EOF has type %d, want 21 (the close_notify alert)", last)
	}
}
