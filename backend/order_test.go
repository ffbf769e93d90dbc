package backend

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
)

// TestResendKeepsOrder: a connection lost with a client's pipeline in flight resends it in the order the
// client sent it, and the client's requests that come meanwhile go after it: two SETs of one key must not
// swap. (Resends used to be parked with a jitter each, and new requests went straight out.)
func TestResendKeepsOrder(t *testing.T) {
	var first atomic.Bool
	node := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if !first.Load() {
			first.Store(true)
			c.Close() // the first connection dies with the whole pipeline in flight
			return
		}
		c.OK()
	})
	h := newHarness(t, testConfig(), node)
	var calls []*call
	for i := 0; i < 50; i++ {
		calls = append(calls, newCall(0, "SET", fmt.Sprint("k", i), "v").idempotent())
	}
	h.send(calls...)
	eventually(t, 5*time.Second, "the connection is lost", func() bool { return h.pool.Stats.ConnsLost.Load() > 0 })
	var later []*call
	for i := 50; i < 100; i++ {
		later = append(later, newCall(0, "SET", fmt.Sprint("k", i), "v").idempotent())
	}
	h.send(later...)
	calls = append(calls, later...)
	for _, c := range calls {
		c.wait(t, 5*time.Second)
	}
	var order []string
	for _, cmd := range node.Log() {
		if cmd.Conn != node.Log()[0].Conn {
			order = append(order, cmd.Args[1])
		}
	}
	for i, k := range order {
		if k != fmt.Sprint("k", i) {
			t.Fatalf("resent out of order: %v", order)
		}
	}
}

// TestNoWaitBehindAnsweredRequests: a client's request that failed at its deadline leaves nothing for the
// client's next one to wait behind, even while other clients' requests back off: a GET to a healthy node
// is answered at once (it was parked until its own deadline behind a request long gone).
func TestNoWaitBehindAnsweredRequests(t *testing.T) {
	down := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.Error("CLUSTERDOWN The cluster is down") })
	up := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { fakeredis.Default(c, args) })
	h := newHarness(t, testConfig(), down, up)
	h.warm(t, 9000)
	for i := range 20 { // other clients' requests back off on the node that is down, until their deadline
		other := newCall(0, "GET", "x")
		other.Affinity = uint32(100 + i)
		h.send(other)
		time.Sleep(3 * time.Millisecond)
	}
	first := newCall(0, "GET", "y").timeout(300 * time.Millisecond)
	first.Affinity = 1
	h.send(first)
	if got, _ := first.wait(t, 2*time.Second); !strings.HasPrefix(string(got), "-CLUSTERDOWN") {
		t.Fatalf("request to the node that is down: %q", got)
	}
	second := newCall(9000, "GET", "z").timeout(2 * time.Second)
	second.Affinity = 1
	start := time.Now()
	h.send(second)
	got, _ := second.wait(t, 5*time.Second)
	if strings.HasPrefix(string(got), "-") || time.Since(start) > time.Second {
		t.Errorf("the client's next request, to a healthy node: %q after %v", got, time.Since(start))
	}
}
