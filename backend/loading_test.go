package backend

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
)

// loadingText is what a Redis that is loading its dataset answers to every command it cannot serve yet
// (server.c: shared.loadingerr).
const loadingText = "LOADING Redis is loading the dataset in memory"

// TestLoadingRetried: README "TRYAGAIN, CLUSTERDOWN, LOADING and lost connections are retried with backoff
// until the request's deadline". A node that answers -LOADING to the first K requests and then serves: the
// client gets the value, the node received exactly K+1 requests, and the pool counted K LOADING retries and
// no failure. LOADING means the command did not run, so even a non-idempotent command (INCR) is resent. A
// node that stays LOADING past the deadline: the request gets Redis's own LOADING text, at its deadline
// (within deadlineBound after it, never before), having been retried meanwhile.
func TestLoadingRetried(t *testing.T) {
	t.Run("until the node has loaded", func(t *testing.T) {
		const k = 4
		var n atomic.Int64
		srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
			if n.Add(1) <= k {
				c.Error(loadingText)
				return
			}
			c.Int(1)
		})
		h := newHarness(t, testConfig(), srv)
		c := newCall(0, "INCR", "counter") // not idempotent: resent only because LOADING says it did not run
		h.send(c)
		c.expect(t, []byte(":1\r\n"))
		if got, want := strings.Join(names(srv, 0), " "), strings.Repeat("INCR ", k)+"INCR"; got != want {
			t.Errorf("the node received %q, want %q (K=%d LOADING answers, then the one that counts)", got, want, k)
		}
		if got := h.pool.Stats.Retries[RetryLoading].Load(); got != k || h.pool.Stats.RetriesFor(RetryTryAgain) != 0 {
			t.Errorf("Stats.Retries loading = %d, tryagain %d; want %d and 0 (one per LOADING reply)", got,
				h.pool.Stats.RetriesFor(RetryTryAgain), k)
		}
		if got := h.pool.Stats.Failed.Load(); got != 0 {
			t.Errorf("Stats.Failed = %d, want 0", got)
		}
	})

	t.Run("still loading at the deadline", func(t *testing.T) {
		srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) { c.Error(loadingText) })
		h := newHarness(t, testConfig(), srv)
		const timeout = 300 * time.Millisecond
		c := newCall(0, "GET", "k").timeout(timeout)
		h.send(c)
		got, at := c.wait(t, 5*time.Second)
		if want := "-" + loadingText + "\r\n"; string(got) != want {
			t.Errorf("reply %q, want %q (the node's last answer)", got, want)
		}
		checkAtDeadline(t, c, at)
		// With backoff from 2 ms doubling to at most 20 ms, 300 ms leave room for well over 5 attempts.
		if n := srv.Requests(); n < 5 {
			t.Errorf("the node got %d requests within %v, want >= 5 (retried with backoff)", n, timeout)
		}
		if n := c.count(); n != 1 {
			t.Errorf("%d replies, want 1", n)
		}
		if got := h.pool.Stats.Failed.Load(); got != 1 {
			t.Errorf("Stats.Failed = %d, want 1", got)
		}
	})
}
