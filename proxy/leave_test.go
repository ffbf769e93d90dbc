package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// Clients that leave, or are refused, in the middle of the session state the proxy keeps for them.

func oneLoop(c *proxy.Config) { c.EventLoops = 1 }

// checkAlive: b's next commands all get their replies.
func checkAlive(t *testing.T, b *rawConn, tag string) {
	for i := 0; i < 5; i++ {
		k := fmt.Sprintf("lv:%s:%d", tag, i)
		b.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b.send(resp.AppendCommandStrings(nil, "SET", k, "v"))
		got := make(chan []byte, 1)
		go func() {
			defer func() { recover() }()
			got <- b.reply()
		}()
		select {
		case g := <-got:
			if string(g) != "+OK\r\n" {
				t.Errorf("%s: SET %d: %q", tag, i, g)
			}
		case <-time.After(4 * time.Second):
			t.Fatalf("%s: SET %d: no reply (client hangs)", tag, i)
		}
	}
}

// TestSubscribeThenLeave: a client that leaves right after SUBSCRIBE, before the node confirmed, disturbs no
// other client of its loop (its request was recycled while still queued, and a later reply went missing).
func TestSubscribeThenLeave(t *testing.T) { leaveRightAfter(t, "sub", "SUBSCRIBE", "lvch") }

// TestBlockThenLeave: the same for a client that leaves right after BLPOP.
func TestBlockThenLeave(t *testing.T) { leaveRightAfter(t, "blk", "BLPOP", "lv:bl", "0") }

// leaveRightAfter has clients send cmd and leave at once, three times, and checks another client of the same
// loop gets every reply.
func leaveRightAfter(t *testing.T, tag string, cmd ...string) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), oneLoop)
	b := dialRaw(t, addr)
	checkAlive(t, b, "warm")
	for round := 0; round < 3; round++ {
		a := dialRaw(t, addr)
		a.send(resp.AppendCommandStrings(nil, cmd...))
		a.c.Close()
		time.Sleep(100 * time.Millisecond)
		checkAlive(t, b, fmt.Sprint(tag, round))
	}
}

// TestBlockedPipelinedClientGone: a blocked client that sent another command behind the blocking one (not
// read while it waits) is still seen leaving: the node's wait ends and an element pushed afterwards stays in
// its list.
func TestBlockedPipelinedClientGone(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, oneLoop)
	a := dialRaw(t, addr)
	a.send(resp.AppendCommandStrings(nil, "BLPOP", "lv:bp", "0"))
	eventually(t, 5*time.Second, "blocked", func() bool { return blockedClients(cl) == 1 })
	a.send(resp.AppendCommandStrings(nil, "PING"))
	time.Sleep(200 * time.Millisecond)
	a.c.Close()
	time.Sleep(2 * time.Second)
	t.Logf("node blocked_clients %d, proxy Blocked %d", blockedClients(cl), srv.Stats().Blocked.Load())
	if n := blockedClients(cl); n != 0 {
		t.Errorf("client left 2 s ago; %d clients still blocked on the nodes", n)
	}
	// push: the element should stay
	c := dialRaw(t, addr)
	c.do("RPUSH", "lv:bp", "x")
	time.Sleep(300 * time.Millisecond)
	if got := string(c.do("LLEN", "lv:bp")); got != ":1\r\n" {
		t.Errorf("LLEN after push: %q (element went to the client that left)", got)
	}
	c.do("DEL", "lv:bp")
}

// TestSubscribeRefused: a SUBSCRIBE the node refuses (NOPERM for the proxy's ACL user) leaves the client
// unsubscribed, as in Redis: PING and SET answer normally and the next SUBSCRIBE counts 1.
func TestSubscribeRefused(t *testing.T) {
	_, _, cl := shared(t)
	for _, n := range cl.Nodes {
		if _, err := n.Do("ACL", "SETUSER", "lvu", "on", ">lvpw", "~*", "resetchannels", "&ok*", "+@all"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = n.Do("ACL", "DELUSER", "lvu") })
	}
	addr := startProxy(t, cl.Addrs(), oneLoop, func(c *proxy.Config) { c.Username, c.Password = "lvu", "lvpw" })
	a := dialRaw(t, addr)
	got := string(a.do("SUBSCRIBE", "forbidden"))
	t.Logf("SUBSCRIBE forbidden: %q", got)
	if !strings.HasPrefix(got, "-NOPERM") {
		t.Errorf("SUBSCRIBE forbidden: %q", got)
	}
	if got := string(a.do("PING")); got != "+PONG\r\n" {
		t.Errorf("PING after a refused SUBSCRIBE: %q, want +PONG (Redis: not subscribed)", got)
	}
	if got := string(a.do("SET", "lv:np", "1")); got != "+OK\r\n" {
		t.Errorf("SET after a refused SUBSCRIBE: %q", got)
	}
	got = string(a.do("SUBSCRIBE", "okch"))
	t.Logf("SUBSCRIBE okch: %q", got)
	if want := string(appendFrame("subscribe", "okch", 1)); got != want {
		t.Errorf("SUBSCRIBE okch: %q, want %q", got, want)
	}
}

func appendFrame(kind, ch string, n int) []byte {
	b := resp.AppendArrayHeader(nil, 3)
	b = resp.AppendBulkString(b, kind)
	b = resp.AppendBulkString(b, ch)
	return resp.AppendInt(b, int64(n))
}

func totalConns(srv *proxy.Server) int {
	n := 0
	for _, v := range srv.BackendConns() {
		n += v
	}
	return n
}

const busy500 = `local s = redis.call('TIME')
repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 500000
return 1`

// TestExecQueuedClientGone: a client that leaves with an EXEC after WATCH still waiting for its turn leaves
// no leased connection.
func TestExecQueuedClientGone(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, oneLoop)
	w := dialRaw(t, addr)
	checkAlive(t, w, "warm")
	time.Sleep(300 * time.Millisecond)
	before := totalConns(srv)
	for i := 0; i < 3; i++ {
		a := dialRaw(t, addr)
		if got := string(a.do("WATCH", "{lvw}k")); got != "+OK\r\n" {
			t.Fatal(got)
		}
		var b []byte
		b = resp.AppendCommandStrings(b, "EVAL", busy500, "1", "{lvw}x")
		b = resp.AppendCommandStrings(b, "MULTI")
		b = resp.AppendCommandStrings(b, "SET", "{lvw}k", "1")
		b = resp.AppendCommandStrings(b, "EXEC")
		a.send(b)
		time.Sleep(50 * time.Millisecond)
		a.c.Close()
		time.Sleep(800 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	after := totalConns(srv)
	t.Logf("backend conns before %d after %d", before, after)
	if after > before {
		t.Errorf("%d leased connections left behind by clients that left", after-before)
	}
}

// TestBlockQueuedClientGone: a client that leaves with a blocking command still waiting for its turn is not
// counted blocked.
func TestBlockQueuedClientGone(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, oneLoop)
	a := dialRaw(t, addr)
	var b []byte
	b = resp.AppendCommandStrings(b, "EVAL", busy500, "1", "{lvb}x")
	b = resp.AppendCommandStrings(b, "BLPOP", "{lvb}l", "0")
	a.send(b)
	time.Sleep(50 * time.Millisecond)
	a.c.Close()
	time.Sleep(1500 * time.Millisecond)
	if n := srv.Stats().Blocked.Load(); n != 0 {
		t.Errorf("Blocked gauge %d after the client left", n)
	}
}

// TestUnsubscribeWhilePending: UNSUBSCRIBE of everything before the node confirmed the SUBSCRIBE: the client
// leaves subscribed mode and holds no leased connection.
func TestUnsubscribeWhilePending(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, oneLoop)
	a := dialRaw(t, addr)
	checkAlive(t, a, "warm")
	time.Sleep(300 * time.Millisecond)
	before := totalConns(srv)
	var b []byte
	b = resp.AppendCommandStrings(b, "SUBSCRIBE", "lvu1")
	b = resp.AppendCommandStrings(b, "UNSUBSCRIBE")
	a.send(b)
	t.Logf("%q", a.reply())
	t.Logf("%q", a.reply())
	time.Sleep(500 * time.Millisecond)
	after := totalConns(srv)
	t.Logf("backend conns before %d after %d", before, after)
	if got := string(a.do("PING")); got != "+PONG\r\n" {
		t.Errorf("PING: %q", got)
	}
	if after > before {
		t.Errorf("an unsubscribed client still holds %d leased connection(s)", after-before)
	}
}

// TestSecondWatchClientGone: a client that leaves with a second WATCH in flight (its node busy) disturbs no
// other client of its loop.
func TestSecondWatchClientGone(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, oneLoop)
	snap := srv.Topology().Snapshot()
	node := nodeByAddr(cl, snap.Nodes[snap.MasterOf(topology.Slot([]byte("{lv2w}")))].Addr).Client(t)
	b := dialRaw(t, addr)
	checkAlive(t, b, "warm")
	a := dialRaw(t, addr)
	if got := string(a.do("WATCH", "{lv2w}k")); got != "+OK\r\n" {
		t.Fatal(got)
	}
	busy := make(chan error, 1)
	go func() { busy <- node.Do(context.Background(), "EVAL", busy500, 1, "{lv2w}x").Err() }()
	time.Sleep(100 * time.Millisecond)
	a.send(resp.AppendCommandStrings(nil, "WATCH", "{lv2w}k2"))
	time.Sleep(100 * time.Millisecond)
	a.c.Close()
	<-busy
	time.Sleep(100 * time.Millisecond)
	checkAlive(t, b, "after2ndwatch")
}

// TestClientReplyOffSubscribe: Redis sends (un)subscribe frames even with CLIENT REPLY OFF or SKIP; so does
// the proxy.
func TestClientReplyOffSubscribe(t *testing.T) {
	pipelined(t, split(`
		CLIENT REPLY OFF
		SUBSCRIBE lv:a
		PSUBSCRIBE lv:*
		SSUBSCRIBE {lv}s
		UNSUBSCRIBE
		PUNSUBSCRIBE
		SUNSUBSCRIBE
		RESET
		CLIENT REPLY SKIP
		SUBSCRIBE lv:b
		UNSUBSCRIBE lv:b
		ECHO end
	`))
}

// TestIdleTimeoutSparesSubscribers: idle_timeout does not close a subscriber, as Redis's timeout spares
// Pub/Sub clients.
func TestIdleTimeoutSparesSubscribers(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.IdleTimeout = proxy.Duration(time.Second) })
	a := dialRaw(t, addr)
	t.Logf("%q", a.do("SUBSCRIBE", "lv:idle"))
	time.Sleep(2500 * time.Millisecond)
	if a.closed() {
		t.Errorf("a subscriber was closed by idle_timeout (Redis exempts Pub/Sub clients)")
	}
}
