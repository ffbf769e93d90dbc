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
// Every client still gets every reply in its place, those around and past the held size (replies of 16 KiB
// -1, +0 and +1, values of 20 KiB) too, and the replies were held.
func TestHeldRepliesArrive(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 8})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	const keys, clients, pipelines, depth = 512, 12, 150, 16
	value := func(i int) string {
		switch i % 64 {
		case 0:
			return strings.Repeat(strconv.Itoa(i%10), 20<<10)
		case 32: // a reply of HoldOut-1, HoldOut or HoldOut+1 bytes on its own
			return bulkOfSize(proxy.HoldOut - 1 + i/64%3)
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

// TestHeldReplyGoesOut: a reply held for the round's flush goes out with the loop's next flush (the round's, or
// a tick's), not when the client's other request comes back from a node that is stuck. Client x sends SETs to nodes A and B, both pausing writes; client y's
// SET then queues behind x's at A. When A answers, y's SET leaves in a small batch, so the round's flush is
// due and x's reply waits for it, while B stays paused (20 s, past x's 10 s read deadline).
func TestHeldReplyGoesOut(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 1 })
	masters := cl.Addrs()
	ka, ka2, kb := keyOn(t, masters[0], "held:a"), keyOn(t, masters[0], "held:a2"), keyOn(t, masters[1], "held:b")
	nodeA, nodeB, admin := dialRaw(t, masters[0]), dialRaw(t, masters[1]), dialRaw(t, addr)
	pause := func(node *rawConn, args ...string) {
		t.Helper()
		if got := node.do(append([]string{"CLIENT"}, args...)...); string(got) != "+OK\r\n" {
			t.Fatalf("CLIENT %v: %q", args, got)
		}
	}
	dispatched := func(c *rawConn) { // the proxy has taken c's SET
		t.Helper()
		redistest.WaitFor(t, 5*time.Second, "the proxy lists the client's SET", func() error {
			for line := range strings.SplitSeq(string(admin.do("CLIENT", "LIST")), "\n") {
				if strings.Contains(line, " addr="+c.c.LocalAddr().String()+" ") && strings.Contains(line, " cmd=set ") {
					return nil
				}
			}
			return fmt.Errorf("no client %s with cmd=set", c.c.LocalAddr())
		})
	}
	for _, k := range []string{ka, kb} { // the proxy's connections to A and B are opened on first use
		admin.do("GET", k)
	}
	for round := range 3 {
		x, y := dialRaw(t, addr), dialRaw(t, addr)
		before := proxy.HeldReplies(srv)
		pause(nodeB, "PAUSE", "20000", "WRITE")
		pause(nodeA, "PAUSE", "20000", "WRITE")
		x.send(append(resp.AppendCommandStrings(nil, "SET", ka, "x"), resp.AppendCommandStrings(nil, "SET", kb, "x")...))
		dispatched(x)
		y.send(resp.AppendCommandStrings(nil, "SET", ka2, "y"))
		dispatched(y)
		pause(nodeA, "UNPAUSE")
		if got := x.reply(); string(got) != "+OK\r\n" { // B is still paused
			t.Fatalf("round %d: SET %s: %q", round, ka, got)
		}
		if proxy.HeldReplies(srv) == before {
			t.Fatalf("round %d: the reply from A was not held: the path under test did not run", round)
		}
		pause(nodeB, "UNPAUSE")
		if got := y.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, ka2, got)
		}
		if got := x.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("round %d: SET %s: %q", round, kb, got)
		}
	}
}
