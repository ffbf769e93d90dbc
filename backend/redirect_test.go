package backend

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
)

// names lists the command names a node received, on the connections given by conn (0: all).
func names(srv *fakeredis.Server, conn int) []string {
	var out []string
	for _, cmd := range srv.Log() {
		if conn == 0 || cmd.Conn == conn {
			out = append(out, cmd.Name())
		}
	}
	return out
}

// TestRedirects: MOVED, ASK and TRYAGAIN are absorbed by the pool: the request gets the answer of the node
// that finally serves it, and never the redirect itself.
func TestRedirects(t *testing.T) {
	t.Run("MOVED", func(t *testing.T) {
		target := fakeredis.Start(t, nil)
		target.Set("k", "from-target")
		src := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.Moved(0, target.Addr) })
		h := newHarness(t, testConfig(), src, target)
		c := newCall(0, "GET", "k")
		h.send(c)
		c.expect(t, bulk("from-target"))
		if src.Requests() != 1 || target.Requests() != 1 {
			t.Errorf("source got %d requests, target %d; want 1 and 1", src.Requests(), target.Requests())
		}
		if h.pool.Stats.Moved.Load() != 1 || h.topo.refreshes.Load() < 1 {
			t.Errorf("Stats.Moved = %d, refreshes asked = %d; want 1 and >= 1",
				h.pool.Stats.Moved.Load(), h.topo.refreshes.Load())
		}
		// The slot now goes to the target directly, until the next map.
		again := newCall(0, "GET", "k")
		h.send(again)
		again.expect(t, bulk("from-target"))
		if src.Requests() != 1 {
			t.Errorf("after MOVED the source got %d requests for the slot, want still 1", src.Requests())
		}
	})

	t.Run("ASK", func(t *testing.T) {
		target := fakeredis.Start(t, nil)
		target.Set("k", "from-target")
		src := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.Ask(0, target.Addr) })
		h := newHarness(t, testConfig(), src, target)
		for i := range 2 { // the first reaches the target while its connection dials, the second when it is open
			c := newCall(0, "GET", "k")
			h.send(c)
			c.expect(t, bulk("from-target"))
			if src.Requests() != i+1 {
				t.Errorf("request %d: the source got %d requests, want %d (ASK does not change the map)", i, src.Requests(), i+1)
			}
		}
		if got, want := strings.Join(names(target, 1), " "), "ASKING GET ASKING GET"; got != want {
			t.Errorf("target's connection 1 received %q, want %q", got, want)
		}
		if target.Accepted() != 1 {
			t.Errorf("target: %d connections, want 1", target.Accepted())
		}
		if h.pool.Stats.Ask.Load() != 2 {
			t.Errorf("Stats.Ask = %d, want 2", h.pool.Stats.Ask.Load())
		}
	})

	t.Run("TRYAGAIN until it succeeds", func(t *testing.T) {
		var n atomic.Int64
		srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
			if n.Add(1) <= 3 {
				c.TryAgain()
				return
			}
			c.Bulk([]byte("at-last"))
		})
		h := newHarness(t, testConfig(), srv)
		c := newCall(0, "GET", "k")
		h.send(c)
		c.expect(t, bulk("at-last"))
		if srv.Requests() != 4 || h.pool.Stats.RetriesFor(RetryTryAgain, RetryLoading) != 3 {
			t.Errorf("node got %d requests, Stats.Retries tryagain+loading = %d; want 4 and 3", srv.Requests(), h.pool.Stats.RetriesFor(RetryTryAgain, RetryLoading))
		}
	})

	t.Run("TRYAGAIN past the deadline", func(t *testing.T) {
		srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.TryAgain() })
		h := newHarness(t, testConfig(), srv)
		c := newCall(0, "GET", "k").timeout(150 * time.Millisecond)
		h.send(c)
		got, at := c.wait(t, 2*time.Second)
		if want := "-" + fakeredis.TryAgainText + "\r\n"; string(got) != want {
			t.Errorf("reply %q, want %q", got, want)
		}
		checkAtDeadline(t, c, at)
		if srv.Requests() < 2 {
			t.Errorf("node got %d requests, want retries", srv.Requests())
		}
	})
}

// TestRedirectLimit: a request that is still redirected after MaxRedirects hops, or redirected to an address
// that cannot be dialled, gets one clear -ERR (DESIGN.md invariant 2: a client never sees MOVED or ASK).
func TestRedirectLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		redirect func(c *fakeredis.Conn, to string)
		hops     bool                     // the request must have travelled MaxRedirects+1 times
		want     func(a, b string) string // today's text; a is slot 0's node, b the other
	}{
		{"MOVED ping-pong", func(c *fakeredis.Conn, to string) { c.Moved(0, to) }, true,
			func(a, b string) string {
				return "-ERR too many redirects (3) for slot 0: last MOVED from " + b + " to " + a + "\r\n"
			}},
		{"ASK ping-pong", func(c *fakeredis.Conn, to string) { c.Ask(0, to) }, true,
			func(a, b string) string {
				return "-ERR too many redirects (3) for slot 0: last ASK from " + b + " to " + a + "\r\n"
			}},
		{"MOVED to an unparsable address", func(c *fakeredis.Conn, to string) { c.Error("MOVED 0 nowhere") }, false,
			func(a, b string) string { return "-ERR unreadable redirect from " + a + ": MOVED 0 nowhere\r\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both listen before either handler is set, so each handler can name the other node.
			a, b := fakeredis.Start(t, nil), fakeredis.Start(t, nil)
			a.SetHandler(func(c *fakeredis.Conn, args [][]byte) {
				if strings.ToUpper(string(args[0])) == "ASKING" {
					c.OK()
					return
				}
				tc.redirect(c, b.Addr)
			})
			b.SetHandler(func(c *fakeredis.Conn, args [][]byte) {
				if strings.ToUpper(string(args[0])) == "ASKING" {
					c.OK()
					return
				}
				tc.redirect(c, a.Addr)
			})
			cfg := testConfig()
			h := newHarness(t, cfg, a, b)
			c := newCall(0, "GET", "k")
			h.send(c)
			got, _ := c.wait(t, 2*time.Second)
			if !bytes.HasPrefix(got, []byte("-ERR")) {
				t.Errorf("reply %q, want one clear -ERR, not the redirect", got)
			} else if want := tc.want(a.Addr, b.Addr); string(got) != want {
				t.Errorf("reply %q, want %q", got, want)
			}
			if n := c.count(); n != 1 {
				t.Errorf("%d replies, want 1", n)
			}
			gets := 0
			for _, srv := range []*fakeredis.Server{a, b} {
				for _, n := range names(srv, 0) {
					if n == "GET" {
						gets++
					}
				}
			}
			if tc.hops && gets != cfg.MaxRedirects+1 {
				t.Errorf("the request was sent %d times, want MaxRedirects+1 = %d", gets, cfg.MaxRedirects+1)
			}
		})
	}
}
