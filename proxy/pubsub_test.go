package proxy_test

import (
	"bytes"
	"context"
	"fmt"
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
