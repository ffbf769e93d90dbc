package backend

import (
	"bytes"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
)

func leaseConfig() Config {
	cfg := testConfig()
	cfg.MaxLeases = 2
	return cfg
}

// lease takes a lease on addr on the loop; nil past the bound.
func (h *harness) lease(addr string) *Lease {
	var l *Lease
	h.onLoop(func() { l = h.pool.Lease(addr) })
	return l
}

func (h *harness) sendLeased(l *Lease, c *call) {
	h.onLoop(func() {
		l.Send(&c.Request)
		h.pool.Flush()
	})
}

// replies waits for n replies of c and returns them.
func (c *call) waitN(t *testing.T, n int) [][]byte {
	t.Helper()
	eventually(t, 5*time.Second, c.name+" gets its replies", func() bool { return c.count() >= n })
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replies
}

// TestLeaseDeliversEveryReply: a request of several commands gets each reply, in order, MOVED included:
// nothing is followed or retried on a lease; and the node sees exactly the bytes sent.
func TestLeaseDeliversEveryReply(t *testing.T) {
	other := fakeredis.Start(t, nil)
	node := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		switch string(args[0]) {
		case "MULTI":
			c.OK()
		case "EXEC":
			c.Write([]byte("*1\r\n+OK\r\n"))
		case "GET":
			c.Moved(0, other.Addr)
		default:
			c.Simple("QUEUED")
		}
	})
	h := newHarness(t, leaseConfig(), node)
	l := h.lease(node.Addr)
	tx := newCall(0, "MULTI")
	tx.Raw = append(tx.Raw, newCall(0, "SET", "k", "v").Raw...)
	tx.Raw = append(tx.Raw, newCall(0, "EXEC").Raw...)
	tx.Replies = 3
	h.sendLeased(l, tx)
	got := tx.waitN(t, 3)
	want := [][]byte{[]byte("+OK\r\n"), []byte("+QUEUED\r\n"), []byte("*1\r\n+OK\r\n")}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("reply %d: %s, want %s", i, show(got[i]), show(want[i]))
		}
	}
	get := newCall(0, "GET", "k")
	h.sendLeased(l, get)
	get.expect(t, []byte("-"+fakeredis.Moved(0, other.Addr)+"\r\n"))
	if other.Requests() != 0 {
		t.Errorf("the MOVED was followed: the other node got %d requests", other.Requests())
	}
	if h.pool.Stats.Moved.Load() != 0 {
		t.Error("a leased MOVED counted as followed")
	}
}

// TestLeaseBoundAndReuse: at most MaxLeases per node; a released lease is reused (no new connection); a
// closed one frees its place.
func TestLeaseBoundAndReuse(t *testing.T) {
	node := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.OK() })
	h := newHarness(t, leaseConfig(), node)
	a, b := h.lease(node.Addr), h.lease(node.Addr)
	if a == nil || b == nil {
		t.Fatal("two leases refused with MaxLeases 2")
	}
	if c := h.lease(node.Addr); c != nil {
		t.Fatal("a third lease granted with MaxLeases 2")
	}
	if n := h.pool.Stats.LeasesRefused.Load(); n != 1 {
		t.Errorf("Stats.LeasesRefused = %d after one refusal", n)
	}
	leased := func() int {
		var n int
		h.onLoop(func() { n = h.pool.NodeStats()[node.Addr].Leased })
		return n
	}
	if n := leased(); n != 2 {
		t.Errorf("NodeStats.Leased = %d with two leases held", n)
	}
	ping := newCall(0, "PING")
	h.sendLeased(a, ping)
	ping.expect(t, []byte("+OK\r\n"))
	h.onLoop(func() { a.Release() })
	if n := leased(); n != 1 {
		t.Errorf("NodeStats.Leased = %d after one of two leases was released", n)
	}
	again := h.lease(node.Addr)
	if again == nil {
		t.Fatal("a released lease was not handed out again")
	}
	ping2 := newCall(0, "PING")
	h.sendLeased(again, ping2)
	ping2.expect(t, []byte("+OK\r\n"))
	if n := node.Accepted(); n != 2 {
		t.Errorf("the node accepted %d connections, want 2 (the released one reused)", n)
	}
	h.onLoop(func() { b.Close() })
	if c := h.lease(node.Addr); c == nil {
		t.Error("a closed lease did not free its place")
	}
}

// TestLeaseLost: a leased connection that the node closes answers what it held with "may or may not have run",
// once per reply owed, is never redialled for the session, and frees its place.
func TestLeaseLost(t *testing.T) {
	node := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[0]) == "EXEC" {
			c.Close()
			return
		}
		c.OK()
	})
	h := newHarness(t, leaseConfig(), node)
	l := h.lease(node.Addr)
	tx := newCall(0, "MULTI")
	tx.Raw = append(tx.Raw, newCall(0, "EXEC").Raw...)
	tx.Replies = 2
	h.sendLeased(l, tx)
	got := tx.waitN(t, 2)
	if !bytes.Equal(got[0], []byte("+OK\r\n")) || !bytes.Equal(got[1], lostErr(node.Addr)) {
		t.Errorf("replies %s, %s; want +OK and the lost-connection error", show(got[0]), show(got[1]))
	}
	after := newCall(0, "PING")
	h.sendLeased(l, after)
	after.expect(t, []byte("-CLUSTERDOWN The cluster is down: node "+node.Addr+" is unreachable\r\n"))
	if n := node.Accepted(); n != 1 {
		t.Errorf("the node accepted %d connections: a lost lease was redialled", n)
	}
	h.onLoop(func() { l.Close() })
	if a, b := h.lease(node.Addr), h.lease(node.Addr); a == nil || b == nil {
		t.Error("a lost lease still counts against the bound")
	}
}

// TestLeaseDeadline: a leased request past its deadline gets the timeout error, for each reply owed, and its
// connection is closed: the node's state for the session is unknown.
func TestLeaseDeadline(t *testing.T) {
	node := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[0]) == "MULTI" {
			c.OK()
		} // EXEC gets no reply
	})
	h := newHarness(t, leaseConfig(), node)
	l := h.lease(node.Addr)
	tx := newCall(0, "MULTI").timeout(200 * time.Millisecond)
	tx.Raw = append(tx.Raw, newCall(0, "EXEC").Raw...)
	tx.Replies = 2
	start := time.Now()
	h.sendLeased(l, tx)
	got := tx.waitN(t, 2)
	want := []byte("-ERR proxy timeout: no reply from " + node.Addr + " in time\r\n")
	if !bytes.Equal(got[0], []byte("+OK\r\n")) || !bytes.Equal(got[1], want) {
		t.Errorf("replies %s, %s; want +OK and %s", show(got[0]), show(got[1]), show(want))
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 200*time.Millisecond+3*tickPeriod+50*time.Millisecond {
		t.Errorf("answered after %v, want at the 200ms deadline", d)
	}
	eventually(t, 5*time.Second, "the node sees the leased connection closed", func() bool { return node.Open() == 0 })
}
