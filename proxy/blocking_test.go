package proxy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// TestBlockingMatchesStandalone: every blocking command through the proxy answers byte for byte what a
// standalone Redis answers, with data there, after its timeout, and for bad timeouts. Keys share a hash tag:
// in a cluster a command's keys must share a slot (TestBlockingCrossSlot).
func TestBlockingMatchesStandalone(t *testing.T) {
	differential(t, split(`
		DEL {bl}a {bl}b {bl}z {bl}s
		RPUSH {bl}a 1 2 3 4 5 6
		BLPOP {bl}a 0
		BRPOP {bl}b {bl}a 0
		BLPOP {bl}b 0.05
		BRPOP {bl}b 0.05
		BLMOVE {bl}a {bl}b LEFT RIGHT 0
		BLMOVE {bl}a {bl}b RIGHT LEFT 0.01
		BRPOPLPUSH {bl}a {bl}b 0
		BRPOPLPUSH {bl}z {bl}b 0.05
		BLMOVE {bl}z {bl}b LEFT LEFT 0.05
		LRANGE {bl}b 0 -1
		BLMPOP 0 2 {bl}z {bl}b LEFT COUNT 2
		BLMPOP 0.05 1 {bl}z RIGHT
		BLMPOP 0 1 {bl}b RIGHT COUNT 10
		ZADD {bl}z 1 a 2 b 3 c 4 d
		BZPOPMIN {bl}z 0
		BZPOPMAX {bl}s {bl}z 0
		BZMPOP 0 1 {bl}z MIN COUNT 5
		BZPOPMIN {bl}z 0.05
		BZMPOP 0.05 1 {bl}z MAX
		XADD {bl}s 1-1 f v
		XREAD BLOCK 0 STREAMS {bl}s 0
		XREAD BLOCK 50 STREAMS {bl}s 1-1
		XREAD COUNT 1 BLOCK 50 STREAMS {bl}s 0-0
		XGROUP CREATE {bl}s g 0
		XREADGROUP GROUP g c1 BLOCK 0 STREAMS {bl}s >
		XREADGROUP GROUP g c1 BLOCK 50 STREAMS {bl}s >
		XREADGROUP GROUP g c1 BLOCK 50 STREAMS {bl}s 0
		BLPOP {bl}a -1
		BLPOP {bl}a abc
		BLPOP {bl}a 1e400
		BLMPOP 0 0 {bl}a LEFT
		BLMPOP 0 x {bl}a LEFT
		BLMPOP 0 1 {bl}a UP
		BZMPOP 0 1 {bl}z SIDEWAYS
		XREAD BLOCK -1 STREAMS {bl}s 0
		XREAD BLOCK 1.5 STREAMS {bl}s 0
		XREAD BLOCK 10 STREAMS {bl}s
		SET {bl}str x
		BLPOP {bl}str 0
		BZPOPMIN {bl}str 0
		BLMOVE {bl}str {bl}b LEFT LEFT 0
		XREAD BLOCK 0 STREAMS {bl}str 0
		BLPOP {bl}a 0x0.01
		MULTI
		BLPOP {bl}a 0
		BZPOPMIN {bl}z 0
		EXEC
	`))
}

// TestBlockingCrossSlot: keys of a blocking command in two slots get Redis Cluster's CROSSSLOT, not a wait.
func TestBlockingCrossSlot(t *testing.T) {
	addr, _, _ := shared(t)
	c := dialRaw(t, addr)
	for _, cmd := range []string{"BLPOP bx1 bx2 0", "BLMOVE bx1 bx2 LEFT LEFT 0", "BRPOPLPUSH bx1 bx2 0",
		"BLMPOP 0 2 bx1 bx2 LEFT", "BZPOPMIN bx1 bx2 0", "XREAD BLOCK 0 STREAMS bx1 bx2 0 0"} {
		args := splitOne(cmd)
		if topology.Slot([]byte("bx1")) == topology.Slot([]byte("bx2")) {
			t.Fatal("bx1 and bx2 share a slot")
		}
		if got, want := string(c.do(args...)), "-CROSSSLOT Keys in request don't hash to the same slot\r\n"; got != want {
			t.Errorf("%s = %q, want %q", cmd, got, want)
		}
	}
}

// TestBlockingWaits: a blocked client gets an element pushed by another client later, after a wait longer
// than the proxy's own request timeout; a timeout longer than that timeout ends with Redis's null, not a
// proxy error; and while 50 clients are blocked on one event loop, another client's commands go on.
func TestBlockingWaits(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) {
		c.Timeout = proxy.Duration(300 * time.Millisecond)
		c.EventLoops = 1
	})
	ctx := context.Background()
	pusher := newClient(addr)
	defer pusher.Close()
	pusher.Del(ctx, "{bw}q", "{bw}t")

	const waiters = 50
	var wg sync.WaitGroup
	got := make(chan string, waiters)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(addr)
			defer c.Close()
			v, err := c.BLPop(ctx, 0, "{bw}q").Result()
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			got <- v[1]
		}()
	}
	eventually(t, 5*time.Second, "every waiter blocked on the node", func() bool {
		return blockedClients(cl) == waiters
	})
	// Others go on meanwhile, on the same loop and nodes.
	for i := range 200 {
		start := time.Now()
		if err := pusher.Set(ctx, fmt.Sprint("{bw}k", i), "v", 0).Err(); err != nil {
			t.Fatalf("SET while others are blocked: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("SET took %v while others are blocked", d)
		}
	}
	time.Sleep(500 * time.Millisecond) // past the proxy's 300 ms request timeout
	for i := range waiters {
		pusher.RPush(ctx, "{bw}q", fmt.Sprint("e", i))
	}
	wg.Wait()
	close(got)
	seen := map[string]bool{}
	for v := range got {
		if seen[v] {
			t.Errorf("%s delivered twice", v)
		}
		seen[v] = true
	}
	if len(seen) != waiters {
		t.Errorf("%d elements delivered, want %d", len(seen), waiters)
	}

	c := newClient(addr)
	defer c.Close()
	start := time.Now()
	if got := string(dialRaw(t, addr).do("BLPOP", "{bw}t", "1.2")); got != "*-1\r\n" {
		t.Errorf("BLPOP 1.2 on an empty list: %q, want a null reply", got)
	}
	if d := time.Since(start); d < 1100*time.Millisecond || d > 3*time.Second {
		t.Errorf("BLPOP 1.2 answered after %v", d)
	}
	start = time.Now()
	if _, err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{"{bw}t", "$"}, Block: 700 * time.Millisecond}).Result(); err != redis.Nil {
		t.Errorf("XREAD BLOCK 700: %v, want a null reply", err)
	}
	if d := time.Since(start); d < 650*time.Millisecond || d > 3*time.Second {
		t.Errorf("XREAD BLOCK 700 answered after %v", d)
	}
}

// blockedClients counts the clients blocked on the nodes of cl.
func blockedClients(cl *redistest.Cluster) int {
	n := 0
	for _, node := range cl.Nodes {
		if info, err := node.DoString("INFO", "clients"); err == nil {
			var k int
			_, _ = fmt.Sscan(infoField(info, "blocked_clients"), &k)
			n += k
		}
	}
	return n
}

// TestBlockingClientGone: a client that leaves while blocked frees the node's side at once (the proxy sends
// CLIENT UNBLOCK), and an element pushed afterwards stays in its list.
func TestBlockingClientGone(t *testing.T) {
	addr, _, cl := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	for _, cmd := range []string{"BLPOP {bg}l 0", "BLMOVE {bg}l {bg}d LEFT RIGHT 0", "BZPOPMIN {bg}z 0",
		"BLMPOP 0 1 {bg}l RIGHT COUNT 3", "XREAD BLOCK 0 STREAMS {bg}s $"} {
		c.Del(ctx, "{bg}l", "{bg}d", "{bg}z")
		p := dialRaw(t, addr)
		p.send(resp.AppendCommandStrings(nil, splitOne(cmd)...))
		eventually(t, 5*time.Second, cmd+" blocked on the node", func() bool { return blockedClients(cl) == 1 })
		left := time.Now()
		p.c.Close()
		eventually(t, 5*time.Second, cmd+" unblocked on the node", func() bool { return blockedClients(cl) == 0 })
		if d := time.Since(left); d > time.Second {
			t.Errorf("%s: the node's side ended %v after the client left", cmd, d)
		}
		c.RPush(ctx, "{bg}l", "x")
		c.ZAdd(ctx, "{bg}z", redis.Z{Score: 1, Member: "m"})
		if n := c.LLen(ctx, "{bg}l").Val(); n != 1 {
			t.Errorf("%s: list of %d after the push, want 1", cmd, n)
		}
		if n := c.ZCard(ctx, "{bg}z").Val(); n != 1 {
			t.Errorf("%s: sorted set of %d after the add, want 1", cmd, n)
		}
	}
}

// TestBlockingPutBack: the node pops for a blocked client that has just left (a script on the node keeps it
// busy while the client leaves, then pushes; the proxy's CLIENT UNBLOCK comes after). The proxy puts what
// was popped back where it was, and the keys end as if the client had never waited.
func TestBlockingPutBack(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	ctx := context.Background()
	snap := snapshotOf(srv)
	node := nodeByAddr(cl, snap.Nodes[snap.MasterOf(topology.Slot([]byte("{pb}")))].Addr).Client(t)
	c := newClient(addr)
	defer c.Close()
	lists := func() string {
		return fmt.Sprint(c.LRange(ctx, "{pb}src", 0, -1).Val(), c.LRange(ctx, "{pb}dst", 0, -1).Val(),
			c.ZRangeWithScores(ctx, "{pb}z", 0, -1).Val())
	}
	for _, tc := range []struct {
		cmd, push string
		dst       []any // in {pb}dst before
	}{
		{cmd: "BLPOP {pb}src 0", push: "RPUSH {pb}src a b c"},
		{cmd: "BRPOP {pb}src 0", push: "RPUSH {pb}src a b c"},
		{cmd: "BLMPOP 0 1 {pb}src LEFT COUNT 2", push: "RPUSH {pb}src a b c"},
		{cmd: "BLMPOP 0 1 {pb}src RIGHT COUNT 2", push: "RPUSH {pb}src a b c"},
		{cmd: "BLMOVE {pb}src {pb}dst LEFT RIGHT 0", push: "RPUSH {pb}src a b c", dst: []any{"a", "d"}},
		{cmd: "BLMOVE {pb}src {pb}dst RIGHT LEFT 0", push: "RPUSH {pb}src a b c", dst: []any{"c", "d"}},
		{cmd: "BRPOPLPUSH {pb}src {pb}dst 0", push: "RPUSH {pb}src a b c"},
		{cmd: "BZPOPMIN {pb}z 0", push: "ZADD {pb}z 1 a 2 b 3.5 c"},
		{cmd: "BZPOPMAX {pb}z 0", push: "ZADD {pb}z 1 a 2 b 3.5 c"},
		{cmd: "BZMPOP 0 1 {pb}z MIN COUNT 2", push: "ZADD {pb}z 1 a 2 b 3.5 c"},
	} {
		c.Del(ctx, "{pb}src", "{pb}dst", "{pb}z")
		if tc.dst != nil {
			c.RPush(ctx, "{pb}dst", tc.dst...)
		}
		// What the keys are without anyone waiting.
		args := []any{}
		for _, a := range splitOne(tc.push) {
			args = append(args, a)
		}
		c.Do(ctx, args...)
		want := lists()
		c.Del(ctx, "{pb}src", "{pb}z")

		before := srv.Stats().PutBack.Load()
		p := dialRaw(t, addr)
		p.send(resp.AppendCommandStrings(nil, splitOne(tc.cmd)...))
		eventually(t, 5*time.Second, tc.cmd+" blocked", func() bool { return blockedClients(cl) == 1 })
		busy := make(chan error, 1)
		go func() {
			script := `local s = redis.call('TIME')
				repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 500000
				return redis.call(unpack(ARGV))`
			args := append([]any{"EVAL", script, 1, "{pb}src"}, args...)
			busy <- node.Do(ctx, args...).Err()
		}()
		time.Sleep(150 * time.Millisecond)
		p.c.Close()
		if err := <-busy; err != nil {
			t.Fatalf("%s: the script: %v", tc.cmd, err)
		}
		eventually(t, 5*time.Second, tc.cmd+": the pop put back", func() bool {
			return srv.Stats().PutBack.Load() == before+1
		})
		if got := lists(); got != want {
			t.Errorf("%s, client gone, %s: keys %s, want %s", tc.cmd, tc.push, got, want)
		}
		if n := blockedClients(cl); n != 0 {
			t.Errorf("%s: %d clients still blocked", tc.cmd, n)
		}
	}
}
