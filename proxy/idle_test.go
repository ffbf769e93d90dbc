package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestIdleLoopsSleep: once every request is answered, no event loop keeps a tick set, whatever the clients
// did (a fleet of idle sidecar proxies must not burn CPU), and a loop that slept serves deadlines again.
func TestIdleLoopsSleep(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.Timeout = proxy.Duration(300 * time.Millisecond)
	})
	ctx := context.Background()
	quiet := func(what string) {
		t.Helper()
		redistest.WaitFor(t, 5*time.Second, what, func() error {
			live, armed := proxy.LoopTicks(srv)
			if len(live) == 0 || slices.ContainsFunc(live, func(n int) bool { return n != 0 }) ||
				slices.Contains(armed, true) {
				return fmt.Errorf("loops: requests alive %v, tick set %v", live, armed)
			}
			return nil
		})
	}

	var clients []*redis.Client
	for range 4 { // over both loops
		c := newClient(addr)
		clients = append(clients, c)
		pipe := c.Pipeline()
		for i := range 50 {
			pipe.Set(ctx, fmt.Sprint("idle:", i), i, 0)
			pipe.Get(ctx, fmt.Sprint("idle:", i))
		}
		pipe.MSet(ctx, "idle:a", 1, "idle:b", 2, "idle:c", 3)
		pipe.MGet(ctx, "idle:a", "idle:b", "idle:c")
		pipe.Del(ctx, "idle:a", "idle:b", "idle:nope")
		pipe.Do(ctx, "NOSUCHCOMMAND")
		pipe.Incr(ctx, "idle:0:not-a-number-key")
		if _, err := pipe.Exec(ctx); err == nil {
			t.Fatal("the unknown command did not fail")
		}
		tx := c.TxPipeline()
		tx.Incr(ctx, "idle:{t}1")
		tx.Incr(ctx, "idle:{t}2")
		if _, err := tx.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]any{{"PING"}, {"INFO"}, {"DBSIZE"}, {"CLIENT", "LIST"}, {"CONFIG", "GET", "maxmemory"},
			{"SCAN", "0"}, {"BLPOP", "idle:empty", "0.05"}} {
			if err := c.Do(ctx, args...).Err(); err != nil && err != redis.Nil {
				t.Fatal(args, err)
			}
		}
		sub := c.Subscribe(ctx, "idle:ch")
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(ctx, "idle:ch", "x").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.ReceiveMessage(ctx); err != nil {
			t.Fatal(err)
		}
		_ = sub.Close()
	}
	quiet("every loop asleep after the traffic, clients still connected")

	// A request after the sleep still gets its deadline: the node holds it (CLIENT PAUSE) past the timeout.
	if _, err := cl.Nodes[0].Do("CLIENT", "PAUSE", "1500", "ALL"); err != nil {
		t.Fatal(err)
	}
	once := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1}) // go-redis resends on CLUSTERDOWN
	defer once.Close()
	start := time.Now()
	err := once.Get(ctx, "idle:0").Err()
	if took := time.Since(start); err == nil || took > time.Second {
		t.Errorf("GET to a paused node after the loops slept: %v after %v; want the 300ms deadline's error", err, took)
	} else {
		t.Logf("deadline: %v after %v", err, took.Round(time.Millisecond))
	}
	time.Sleep(time.Second) // the pause ends: the late reply must be dropped, not given to the next request
	for _, c := range clients {
		_ = c.Close()
	}
	quiet("every loop asleep once the clients left")
}

// TestPausedIdleLoopResumes: a client paused for its unread output when no request is alive any more (its
// large reply was delivered whole into the output buffer) is resumed once it reads, though the loop has
// nothing else to tick for. Found as a 120 s hang in TestSizeMatrix's pipelined 100 MiB script.
func TestPausedIdleLoopResumes(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 1})
	addr, _ := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 1 })
	c := dialRaw(t, addr)
	big := strings.Repeat("v", 20<<20) // well past the 8 MiB of unread output that pauses a client
	if got := c.do("SET", "paused:big", big); string(got) != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	c.send(resp.AppendCommandStrings(nil, "GET", "paused:big"))
	time.Sleep(300 * time.Millisecond)             // the reply is in the proxy's output buffer; nothing is alive
	c.send(resp.AppendCommandStrings(nil, "PING")) // parsed only if the client is not paused
	time.Sleep(300 * time.Millisecond)
	if got := c.reply(); len(got) != len(big)+len("$20971520\r\n\r\n") {
		t.Fatalf("GET: %d bytes", len(got))
	}
	start := time.Now()
	if got := c.reply(); string(got) != "+PONG\r\n" {
		t.Fatalf("PING after the large reply: %q", got)
	}
	t.Logf("PING answered %v after the large reply was read", time.Since(start).Round(time.Millisecond))
}
