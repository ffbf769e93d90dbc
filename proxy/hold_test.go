package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestHeldRepliesArrive: over many masters each client's pipeline is answered by as many nodes, and while the
// loop's round flush is due a client still waiting for some of them keeps the others' replies until then.
// Every client still gets every reply in its place, those past the held size (20 KiB values) too, and the
// replies were held.
func TestHeldRepliesArrive(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 8})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	const keys, clients, pipelines, depth = 512, 12, 150, 16
	value := func(i int) string {
		if i%64 == 0 {
			return strings.Repeat(strconv.Itoa(i%10), 20<<10)
		}
		return fmt.Sprintf("held:%d:%s", i, strings.Repeat("x", i%100))
	}
	ctx := context.Background()
	seed := newClient(addr)
	defer seed.Close()
	pipe := seed.Pipeline()
	for i := range keys {
		pipe.Set(ctx, fmt.Sprintf("held:%d", i), value(i), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			cli := newClient(addr)
			defer cli.Close()
			rng := rand.New(rand.NewPCG(uint64(c), 12))
			idx := make([]int, depth)
			cmds := make([]*redis.StringCmd, depth)
			for range pipelines {
				p := cli.Pipeline()
				for j := range depth {
					idx[j] = rng.IntN(keys)
					cmds[j] = p.Get(ctx, fmt.Sprintf("held:%d", idx[j]))
				}
				if _, err := p.Exec(ctx); err != nil {
					errs <- fmt.Errorf("client %d: %v", c, err)
					return
				}
				for j, cmd := range cmds {
					if got, want := cmd.Val(), value(idx[j]); got != want {
						errs <- fmt.Errorf("client %d: GET held:%d (place %d): %.40q (%d bytes), want %.40q (%d)",
							c, idx[j], j, got, len(got), want, len(want))
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := proxy.HeldReplies(srv); n == 0 {
		t.Fatal("no client's replies waited for the round's flush: the path under test did not run")
	} else {
		t.Logf("replies held %d times over %d pipelines", n, clients*pipelines)
	}
}

// TestHeldReplyGoesOut: a reply held for the round's flush goes out with it, not when the client's other
// request comes back from a node that is stuck. The client sends SETs to nodes A and B, both pausing writes
// (B for 4 s), and another client's SET queues behind the first at A: A's answer lets it go in a small batch,
// so the round's flush is due and the first client's reply waits for it.
func TestHeldReplyGoesOut(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 1 })
	masters := cl.Addrs()
	ka, ka2, kb := keyOn(t, masters[0], "held:a"), keyOn(t, masters[0], "held:a2"), keyOn(t, masters[1], "held:b")
	nodeA, nodeB := dialRaw(t, masters[0]), dialRaw(t, masters[1])
	for round := range 3 {
		x, y := dialRaw(t, addr), dialRaw(t, addr)
		before := proxy.HeldReplies(srv)
		start := time.Now()
		for _, pause := range []struct {
			node *rawConn
			ms   string
		}{{nodeB, "4000"}, {nodeA, "300"}} {
			if got := pause.node.do("CLIENT", "PAUSE", pause.ms, "WRITE"); string(got) != "+OK\r\n" {
				t.Fatalf("CLIENT PAUSE: %q", got)
			}
		}
		x.send(append(resp.AppendCommandStrings(nil, "SET", ka, "x"), resp.AppendCommandStrings(nil, "SET", kb, "x")...))
		time.Sleep(50 * time.Millisecond)
		y.send(resp.AppendCommandStrings(nil, "SET", ka2, "y")) // behind x's first SET at A
		if got := x.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, ka, got)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("round %d: the reply from A came after %v, with B's: it was held past the round", round, d)
		}
		if got := nodeB.do("CLIENT", "UNPAUSE"); string(got) != "+OK\r\n" {
			t.Fatalf("CLIENT UNPAUSE: %q", got)
		}
		if got := y.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, ka2, got)
		}
		if got := x.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, kb, got)
		}
		if proxy.HeldReplies(srv) == before {
			t.Fatalf("round %d: the reply from A was not held: the path under test did not run", round)
		}
	}
}
