package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// The 3+3 cluster and standalone server are shared by the tests of this package: starting them is the slow
// part. Tests use distinct keys.
var (
	sharedOnce       sync.Once
	sharedCluster    *redistest.Cluster
	sharedStandalone *redistest.Server
	sharedProxy      string
	sharedErr        error
)

var sharedT = &sharedTB{}

func TestMain(m *testing.M) {
	code := m.Run()
	sharedT.cleanup()
	// An error the proxy logged fails the run even when it came after its test ended (the shared proxy).
	if errs := proxyErrors.all(); len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the proxy logged %d errors:\n%s", len(errs), strings.Join(errs, ""))
		code = 1
	}
	os.Exit(code)
}

// currentTest names the last test that asked for the shared proxy, for its log lines.
var currentTest atomic.Value

// proxyErrors collects the ERROR lines of every proxy the tests ran: a panic in a callback, a stopped metrics
// server. Warnings (a lost backend connection) are part of the scenarios and only logged.
var proxyErrors errorLines

type errorLines struct {
	mu    sync.Mutex
	lines []string
}

func (e *errorLines) add(s string) { e.mu.Lock(); e.lines = append(e.lines, s); e.mu.Unlock() }

func (e *errorLines) all() []string { e.mu.Lock(); defer e.mu.Unlock(); return slices.Clone(e.lines) }

// sharedTB lets the shared processes outlive one test and be stopped when the package's tests end.
type sharedTB struct {
	testing.TB
	mu  sync.Mutex
	fns []func()
}

func (s *sharedTB) Cleanup(f func()) { s.mu.Lock(); s.fns = append(s.fns, f); s.mu.Unlock() }

// TempDir outlives the first test, which TB.TempDir would not.
func (s *sharedTB) TempDir() string {
	dir, err := os.MkdirTemp("", "slotproxy-test-")
	if err != nil {
		s.TB.Fatal(err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (s *sharedTB) cleanup() {
	for i := len(s.fns) - 1; i >= 0; i-- {
		s.fns[i]()
	}
}

// shared returns the proxy address in front of the shared cluster, and the standalone server.
func shared(t testing.TB) (proxyAddr string, standalone *redistest.Server, cluster *redistest.Cluster) {
	t.Helper()
	sharedOnce.Do(func() {
		sharedT.TB = t
		// A node busy with 100 MiB values on a loaded machine can miss the default 2 s node timeout, and the
		// failover that follows loses what it had not replicated yet (TestSizeMatrix saw DEL count 6 of 7).
		// No test fails the shared cluster's nodes over.
		sharedCluster = redistest.StartCluster(sharedT, redistest.ClusterOptions{Masters: 3, Replicas: 1,
			NodeTimeout: 15 * time.Second})
		sharedStandalone = redistest.StartServer(sharedT)
		sharedProxy = startProxy(sharedT, sharedCluster.Addrs())
	})
	if sharedProxy == "" {
		t.Fatal("shared cluster failed to start")
	}
	currentTest.Store(t.Name())
	return sharedProxy, sharedStandalone, sharedCluster
}

// startProxy runs a proxy in this process in front of seeds, stopped at cleanup.
func startProxy(t testing.TB, seeds []string, tweak ...func(*proxy.Config)) string {
	t.Helper()
	addr, _ := startProxyOpt(t, seeds, false, tweak...)
	return addr
}

// startProxyOpt is startProxy; with noWait it does not wait for a slot map.
func startProxyOpt(t testing.TB, seeds []string, noWait bool, tweak ...func(*proxy.Config)) (string, *proxy.Server) {
	t.Helper()
	cfg := proxy.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Metrics = ""
	cfg.Seeds = seeds
	cfg.EventLoops = 2
	for _, f := range tweak {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backendTLS, err := cfg.BackendTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	topo := topology.NewManager(topology.Config{
		TLS:   backendTLS,
		Seeds: seeds, RefreshInterval: cfg.RefreshInterval.D(), DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, Logger: log, Username: cfg.Username, Password: cfg.Password,
	})
	topo.Start()
	if !noWait {
		select {
		case <-topo.Ready():
		case <-time.After(20 * time.Second):
			topo.Close()
			t.Fatal("no slot map from", seeds)
		}
	}
	srv := proxy.New(cfg, topo, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	addr := srv.Addr()
	if addr == "" {
		topo.Close()
		t.Fatal("proxy did not start:", <-errc)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
		topo.Close()
	})
	return addr, srv
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a log line after the test ended must not panic
	if bytes.Contains(p, []byte("level=ERROR")) {
		proxyErrors.add(string(p))
	}
	if _, shared := w.t.(*sharedTB); shared {
		// The shared proxy outlives the test that started it: its lines go to the run's output, with the test
		// that was running, so that a warning is seen whichever test it belongs to.
		fmt.Fprintf(os.Stderr, "shared proxy (%s): %s", currentTest.Load(), p)
		return len(p), nil
	}
	if bytes.Contains(p, []byte("level=ERROR")) {
		w.t.Errorf("the proxy logged an error: %s", p)
	} else {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func newClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
}

// keyOn returns a key with the given prefix that the cluster node at node serves (it does not answer MOVED).
func keyOn(t testing.TB, node string, prefix string) string {
	t.Helper()
	c := dialRaw(t, node)
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if !bytes.HasPrefix(c.do("GET", k), []byte("-MOVED")) {
			return k
		}
	}
}

// rawConn speaks RESP bytes, to compare replies byte for byte.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	sc resp.ReplyScanner
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(b []byte) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawConn) do(args ...string) []byte {
	rc.t.Helper()
	rc.send(resp.AppendCommandStrings(nil, args...))
	return rc.reply()
}

// reply reads one whole reply; nil at EOF.
func (rc *rawConn) reply() []byte {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf []byte
	rc.sc.Reset()
	for {
		if len(buf) > 0 {
			n, err := rc.sc.Scan(buf)
			if err != nil {
				rc.t.Fatalf("bad reply %q: %v", buf, err)
			}
			if n > 0 {
				return buf[:n]
			}
		}
		b, err := rc.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			rc.t.Fatalf("read: %v (have %q)", err, buf)
		}
		buf = append(buf, b)
	}
}

// closed reports whether the peer closed the connection (EOF within a short wait).
func (rc *rawConn) closed() bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.r.ReadByte()
	return err == io.EOF
}

// checkServes makes c SET and GET a key on every master of the shared cluster (the ranges redis-cli --cluster
// create gives): a client that still goes on after someone else's fault must get backend answers, not only
// PING or ECHO, which the proxy answers itself.
func checkServes(t testing.TB, c *rawConn, tag string) {
	t.Helper()
	for _, r := range [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}} {
		k := keyInRange("serves:"+tag+":", r[0], r[1])
		if got := string(c.do("SET", k, tag)); got != "+OK\r\n" {
			t.Fatalf("SET %s after %s: %q", k, tag, got)
		}
		if got, want := string(c.do("GET", k)), string(resp.AppendBulkString(nil, tag)); got != want {
			t.Fatalf("GET %s after %s: %q, want %q", k, tag, got, want)
		}
	}
}

// infoField is the value of name in an INFO text ("" if absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}
