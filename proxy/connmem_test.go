package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// TestRestingClientHeap: what an idle client costs the proxy process in live heap, gnet's connection state
// included, measured as the runtime counts it after a collection (the heap profile with gc=1), so that the
// figure is exact where RSS would carry the collector's headroom. Each client sent one PING and rests.
func TestRestingClientHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	t.Parallel()
	// gnet keeps 372 bytes per connection (its conn and read callback, the remote address twice over, its
	// connection table; bench/gnetfloor), the proxy its session (160) and a slot in its loop's list. Measured: 540
	// per client, 572 with the 192-byte session before it; the tables grow by doubling, the same way in
	// every run for the same count of clients.
	const clients, perClient = 4000, 556
	if got := proxy.SessionSize; got > 160 {
		t.Errorf("a session is %d bytes, want at most 160 (a size class of the Go heap)", got)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < clients+4000 {
		t.Skipf("%d open files allowed: the test holds %d clients beside the other tests' files", lim.Cur, clients)
	}
	_, _, cl := shared(t)
	addr, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	p := runBinary(t, fmt.Sprintf("listen: %s\nmetrics: %s\nseeds: [%s]\npprof: true\nevent_loops: 1\nlog_level: warn\n"+
		"refresh_interval: 1h\n", // no slot map read, and its buffers, between the two counts
		addr, metricsAddr, strings.Join(cl.Addrs(), ", ")))
	p.waitServes(t, addr)
	liveHeap := func() int64 {
		t.Helper()
		code, body, _, err := httpGet("http://" + metricsAddr + "/debug/pprof/heap?debug=1&gc=1")
		if err != nil || code != 200 {
			t.Fatalf("heap profile: %d %v", code, err)
		}
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("HeapAlloc %q: %v", v, err)
				}
				return n
			}
		}
		t.Fatalf("no HeapAlloc in the heap profile:\n%.500s", body)
		return 0
	}
	liveHeap() // the profile's own first-use allocations
	before := liveHeap()
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); line != "+PONG\r\n" {
			t.Fatalf("client %d: PING answered %q %v", len(conns), line, err)
		}
	}
	liveHeap() // as before: what sync.Pools held goes with a second collection
	after := liveHeap()
	per := float64(after-before) / clients
	t.Logf("%d resting clients: live heap %d -> %d bytes, %.1f per client", clients, before, after, per)
	if per > perClient {
		t.Errorf("a resting client costs %.1f bytes of live heap, want at most %d", per, perClient)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = conns[:0]
	// Their sessions go; the tables that listed them keep their capacity (gnet's and the loop's).
	p.waitFor(t, 10*time.Second, "the clients' memory is given back", func() error {
		if left := liveHeap() - before; left > clients*100 { // a client kept would be 500 bytes and more
			return fmt.Errorf("%d bytes of live heap more than before the %d clients, after they left", left, clients)
		}
		return nil
	})
	t.Logf("after they left: %d bytes more than before them", liveHeap()-before)
}
