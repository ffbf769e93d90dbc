package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/resp"
)

// pipelined sends cmds in one write to both the standalone server and the proxy and compares every byte they
// answer, up to the reply of the last command, which must be ECHO end.
func pipelined(t *testing.T, cmds [][]string) {
	t.Helper()
	addr, standalone, _ := shared(t)
	var req []byte
	for _, cmd := range cmds {
		req = resp.AppendCommandStrings(req, cmd...)
	}
	var got [2][]byte
	for i, a := range []string{standalone.Addr, addr} {
		c := dialRaw(t, a)
		c.send(req)
		for !bytes.HasSuffix(got[i], []byte("$3\r\nend\r\n")) {
			got[i] = append(got[i], c.reply()...)
		}
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Errorf("replies:\n proxy %q\n redis %q", got[1], got[0])
	}
}

// TestPubSubMatchesStandalone: the (un)subscribe commands answer Redis's frames and counts byte for byte,
// subscribed mode refuses what Redis refuses with Redis's error and answers PING as Redis does, and RESET
// leaves it.
func TestPubSubMatchesStandalone(t *testing.T) {
	pipelined(t, split(`
		SUBSCRIBE {ps}a {ps}b {ps}a
		GET {ps}x
		PING
		PING hi
		SSUBSCRIBE {ps}s1 {ps}s2
		SSUBSCRIBE {ps}s1
		PSUBSCRIBE {ps}p*
		MULTI
		CLIENT ID
		UNSUBSCRIBE {ps}b {ps}zz
		PUNSUBSCRIBE
		SUNSUBSCRIBE {ps}s2
		SUNSUBSCRIBE
		UNSUBSCRIBE
		GET {ps}x
		UNSUBSCRIBE
		PUNSUBSCRIBE {ps}x
		SUNSUBSCRIBE
		SUBSCRIBE
		PSUBSCRIBE {ps}q?
		RESET
		GET {ps}x
		SSUBSCRIBE {ps}s3
		PING
		RESET
		ECHO end
	`))
}

// TestPubSubDelivery: subscribers through the proxy get every message published through the proxy and
// straight to a node, in order per channel and publisher, for channels, patterns and shard channels of every
// shard; a second proxy's subscribers too. Redis Cluster's PUBLISH counts only the receiving node's subscribers, so its reply is not
// checked (a cluster legitimately differs there).
func TestPubSubDelivery(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	other := startProxy(t, cl.Addrs())
	ctx := context.Background()
	snap := snapshotOf(srv)
	var shardChans []string
	for shard := range snap.Shards {
		shardChans = append(shardChans, "{"+keyInShard(snap, shard)+"}sch")
	}
	const subscribers, perChannel = 8, 300
	type sub struct {
		ps   *redis.PubSub
		got  map[string][]string
		done chan struct{}
	}
	var subs []*sub
	for i := range subscribers {
		a := addr
		if i%2 == 1 {
			a = other
		}
		c := newClient(a)
		defer c.Close()
		ps := c.Subscribe(ctx, "news", "sport", "direct")
		if err := ps.PSubscribe(ctx, "pat.*"); err != nil {
			t.Fatal(err)
		}
		for _, ch := range shardChans { // one slot per SSUBSCRIBE, as in a cluster
			if err := ps.SSubscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		for range 4 + len(shardChans) { // the confirmations
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		subs = append(subs, &sub{ps: ps, got: map[string][]string{}, done: make(chan struct{})})
	}
	chans := append([]string{"news", "sport", "pat.x", "direct"}, shardChans...)
	want := len(chans) * perChannel
	for _, s := range subs {
		go func() {
			defer close(s.done)
			for n := 0; n < want; n++ {
				m, err := s.ps.ReceiveMessage(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				s.got[m.Channel] = append(s.got[m.Channel], m.Payload)
			}
		}()
	}
	pub := newClient(addr)
	defer pub.Close()
	direct := cl.Nodes[len(cl.Nodes)-1].Client(t) // a replica: PUBLISH reaches the whole cluster from any node
	for i := range perChannel {
		msg := fmt.Sprint(i)
		for _, ch := range chans[:3] {
			if err := pub.Publish(ctx, ch, msg).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := direct.Publish(ctx, "direct", msg).Err(); err != nil {
			t.Fatal(err)
		}
		for _, ch := range shardChans {
			if err := pub.SPublish(ctx, ch, msg).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, s := range subs {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber %d: %d channels received after 10 s", i, len(s.got))
		}
		for _, ch := range chans {
			got := s.got[ch]
			if len(got) != perChannel {
				t.Errorf("subscriber %d, %s: %d messages, want %d", i, ch, len(got), perChannel)
				continue
			}
			for j, m := range got {
				if m != fmt.Sprint(j) {
					t.Errorf("subscriber %d, %s: message %d is %q: out of order", i, ch, j, m)
					break
				}
			}
		}
		s.ps.Close()
	}
}

// TestPubSubQueriesMatchStandalone: with the same subscribers on a standalone server and through the proxy
// (plus one subscribed straight to a cluster replica), PUBSUB NUMSUB, SHARDNUMSUB and NUMPAT answer the same
// bytes and CHANNELS, SHARDCHANNELS the same channels: every node's subscribers are counted once.
func TestPubSubQueriesMatchStandalone(t *testing.T) {
	addr, standalone, cl := shared(t)
	subscribe := func(a string, cmds ...string) {
		c := dialRaw(t, a)
		for _, cmd := range cmds {
			args := splitOne(cmd)
			c.send(resp.AppendCommandStrings(nil, args...))
			for range len(args) - 1 {
				c.reply()
			}
		}
	}
	var replica string
	for _, n := range cl.Nodes {
		if !isMaster(n) {
			replica = n.Addr
			break
		}
	}
	for i, a := range []string{standalone.Addr, addr} {
		subscribe(a, "SUBSCRIBE pq:a pq:b", "PSUBSCRIBE pq:p*", "SSUBSCRIBE {pq}s")
		subscribe(a, "SUBSCRIBE pq:a", "SSUBSCRIBE {pq}s {pq}t")
		subscribe(a, "PSUBSCRIBE pq:q*")
		if i == 0 {
			subscribe(standalone.Addr, "SUBSCRIBE pq:a")
		} else {
			subscribe(replica, "SUBSCRIBE pq:a")
		}
	}
	numpat := func(a string) int64 {
		n, _ := resp.ParseInt(dialRaw(t, a).do("PUBSUB", "NUMPAT"))
		return n
	}
	eventually(t, 5*time.Second, "the proxy's subscriptions are in place", func() bool {
		return bytes.Equal(dialRaw(t, standalone.Addr).do("PUBSUB", "NUMSUB", "pq:a", "pq:b", "pq:none"),
			dialRaw(t, addr).do("PUBSUB", "NUMSUB", "pq:a", "pq:b", "pq:none")) && numpat(addr) >= 2
	})
	for _, cmd := range []string{"PUBSUB NUMSUB pq:a pq:b pq:none", "PUBSUB NUMSUB", "PUBSUB SHARDNUMSUB {pq}s {pq}t {pq}u",
		"PUBSUB CHANNELS pq:*", "PUBSUB CHANNELS pq:?", "PUBSUB SHARDCHANNELS {pq}*", "PUBSUB NUMPAT", "PUBSUB NOSUCH",
		"PUBSUB CHANNELS a b"} {
		args := splitOne(cmd)
		w, g := dialRaw(t, standalone.Addr).do(args...), dialRaw(t, addr).do(args...)
		if strings.Contains(cmd, "CHANNELS") { // a set: Redis's order is its dict's
			ws, _ := resp.ArrayElems(w, nil)
			gs, _ := resp.ArrayElems(g, nil)
			slices.SortFunc(ws, bytes.Compare)
			if len(ws) > 0 {
				w = append(resp.AppendArrayHeader(nil, len(ws)), bytes.Join(ws, nil)...)
			}
			if len(gs) > 0 {
				g = append(resp.AppendArrayHeader(nil, len(gs)), bytes.Join(gs, nil)...)
			}
		}
		if cmd == "PUBSUB NUMPAT" { // other tests' pattern subscribers may linger on the cluster
			if n := numpat(addr); n < 2 {
				t.Errorf("PUBSUB NUMPAT = %d, want at least this test's 2", n)
			}
			continue
		}
		if !bytes.Equal(w, g) {
			t.Errorf("%s:\n proxy %q\n redis %q", cmd, g, w)
		}
	}
}

// TestPubSubLeavesNoConnection: clients that subscribe and unsubscribe at once (pipelined, before the node
// confirmed), that leave right after SUBSCRIBE, or that RESET while subscribed leave no subscription and no
// connection on the nodes.
func TestPubSubLeavesNoConnection(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs())
	nodeClients := func() int {
		n := 0
		for _, node := range cl.Nodes {
			info, err := node.DoString("INFO", "clients")
			if err != nil {
				t.Fatal(err)
			}
			var k int
			fmt.Sscan(infoField(info, "connected_clients"), &k)
			n += k
		}
		return n
	}
	dialRaw(t, addr).do("PING") // the proxy's shared connections, opened before counting
	before := nodeClients()
	const clients = 30
	for i := range clients {
		c := dialRaw(t, addr)
		var req []byte
		for _, cmd := range []string{"SUBSCRIBE lc:a lc:b", "UNSUBSCRIBE", "SSUBSCRIBE {lc}s", "SUNSUBSCRIBE",
			"PSUBSCRIBE lc:*", "PUNSUBSCRIBE lc:*"} {
			req = resp.AppendCommandStrings(req, splitOne(cmd)...)
		}
		switch i % 3 {
		case 0: // all of it, then the frames
			c.send(resp.AppendCommandStrings(req, "PING"))
			for range 2 + 2 + 1 + 1 + 1 + 1 + 1 {
				c.reply()
			}
		case 1: // leaves before the node confirmed
			c.send(resp.AppendCommandStrings(nil, "SUBSCRIBE", "lc:gone"))
			c.c.Close()
		case 2: // RESET while subscribed
			c.send(resp.AppendCommandStrings(resp.AppendCommandStrings(nil, "SSUBSCRIBE", "{lc}r"), "RESET"))
			c.reply()
			if got := string(c.reply()); got != "+RESET\r\n" {
				t.Fatalf("RESET = %q", got)
			}
		}
	}
	eventually(t, 5*time.Second, "no subscriber left on the nodes", func() bool {
		r := dialRaw(t, addr)
		return string(r.do("PUBSUB", "NUMSUB", "lc:a", "lc:gone")) == "*4\r\n$4\r\nlc:a\r\n:0\r\n$7\r\nlc:gone\r\n:0\r\n" &&
			string(r.do("PUBSUB", "SHARDNUMSUB", "{lc}s", "{lc}r")) == "*4\r\n$5\r\n{lc}s\r\n:0\r\n$5\r\n{lc}r\r\n:0\r\n" &&
			string(r.do("PUBSUB", "NUMPAT")) == ":0\r\n"
	})
	// The proxy keeps a few released leases open per node and loop; subscriber connections are never kept.
	eventually(t, 5*time.Second, "the subscribers' connections closed", func() bool {
		return nodeClients() <= before+2*len(cl.Nodes)
	})
}

// TestSlowSubscriberClosed: a subscriber that reads nothing while messages pile up is closed at Redis's
// Pub/Sub output limit (32 MiB), not the normal clients' one; other subscribers go on.
func TestSlowSubscriberClosed(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	slow, fast := dialRaw(t, addr), newClient(addr)
	defer fast.Close()
	ctx := context.Background()
	slow.do("SUBSCRIBE", "slow:ch")
	ps := fast.Subscribe(ctx, "slow:ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	received := make(chan int)
	go func() {
		n := 0
		for {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				break
			}
			if n++; n == 600 {
				break
			}
		}
		received <- n
	}()
	pub := newClient(addr)
	defer pub.Close()
	payload := strings.Repeat("x", 100<<10)
	before := srv.Stats().OutputLimitClosed.Load()
	for range 600 { // 60 MiB
		if err := pub.Publish(ctx, "slow:ch", payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the slow subscriber closed", func() bool {
		return srv.Stats().OutputLimitClosed.Load() == before+1
	})
	select {
	case n := <-received:
		if n != 600 {
			t.Errorf("the subscriber that reads got %d messages, want 600", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the subscriber that reads did not get its messages")
	}
}
