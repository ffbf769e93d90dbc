package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestDonatedBufferNotShared: two large requests that arrive together in the memory of a request that spanned
// reads. The first takes that memory as its own, and it goes back to the loop's pool when the first is
// answered; the second, still waiting behind a paused node, must not be in it, or the next large request of
// another client (which gets the memory from the pool) overwrites what the second sends.
func TestDonatedBufferNotShared(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, _ := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 1 })
	masters := cl.Addrs()
	ka, kz := keyOn(t, masters[0], "donate:a"), keyOn(t, masters[0], "donate:z")
	kb, ky := keyOn(t, masters[1], "donate:b"), keyOn(t, masters[1], "donate:y")
	nodeB := dialRaw(t, masters[1])
	for round := range 5 {
		valA := strings.Repeat("a", 100<<10)
		valB := strings.Repeat(fmt.Sprint(round), 70<<10)
		x, y, z := dialRaw(t, addr), dialRaw(t, addr), dialRaw(t, addr)
		if got := nodeB.do("CLIENT", "PAUSE", "700", "WRITE"); string(got) != "+OK\r\n" {
			t.Fatalf("CLIENT PAUSE: %q", got)
		}
		y.send(resp.AppendCommandStrings(nil, "SET", ky, "y")) // in flight on the node's connection
		time.Sleep(50 * time.Millisecond)

		first := resp.AppendCommandStrings(nil, "SET", ka, valA)
		second := resp.AppendCommandStrings(nil, "SET", kb, valB)
		x.send(first[:len(first)-1]) // the first spans reads: it goes to the Inbox
		time.Sleep(50 * time.Millisecond)
		x.send(append(first[len(first)-1:], second...))
		if got := x.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, ka, got)
		}

		// Another client's large request that spans reads, gathered in memory from the pool.
		other := resp.AppendCommandStrings(nil, "SET", kz, strings.Repeat("z", 400<<10))
		z.send(other[:len(other)/2])
		time.Sleep(50 * time.Millisecond)
		z.send(other[len(other)/2:])
		if got := z.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, kz, got)
		}

		if got := y.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, ky, got)
		}
		if got := x.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s after the node's pause: %q", round, kb, got)
		}
		got := dialRaw(t, addr).do("GET", kb)
		if want := fmt.Sprintf("$%d\r\n%s\r\n", len(valB), valB); string(got) != want {
			t.Fatalf("round %d: GET %s: %d bytes, %q..., want %d bytes of %q", round, kb, len(got),
				got[:min(len(got), 40)], len(want), want[:40])
		}
	}
}
