package backend

import (
	"fmt"
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
