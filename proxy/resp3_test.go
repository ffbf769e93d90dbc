package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// helloID is HELLO's connection id: the proxy's own numbering, not the node's, so the one place where a
// RESP3 reply of the proxy legitimately differs from the standalone server's. maskID blanks it in both.
var helloID = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`)

func maskID(b []byte) []byte { return helloID.ReplaceAllLiteral(b, []byte("$2\r\nid\r\n:ID\r\n")) }

// resp3Pair dials the standalone server and the proxy, says HELLO 3 on both and checks the two HELLO maps
// are the same but for the id.
func resp3Pair(t *testing.T) (want, got *rawConn) {
	t.Helper()
	addr, standalone, _ := shared(t)
	want, got = dialRaw(t, standalone.Addr), dialRaw(t, addr)
	w, g := want.do("HELLO", "3"), got.do("HELLO", "3")
	if !bytes.Equal(maskID(w), maskID(g)) {
		t.Fatalf("HELLO 3:\n proxy %q\n redis %q", g, w)
	}
	return want, got
}

// same sends each command to both and wants the same bytes back (HELLO's id masked).
func same(t *testing.T, want, got *rawConn, cmds [][]string) {
	t.Helper()
	for _, cmd := range cmds {
		w, g := maskID(want.do(cmd...)), maskID(got.do(cmd...))
		if !bytes.Equal(w, g) {
			t.Errorf("%q:\n proxy %q\n redis %q", cmd, g, w)
		}
	}
}

// pipelined3 sends cmds in one write after HELLO 3 and compares every byte answered up to ECHO end.
func pipelined3(t *testing.T, cmds [][]string) {
	t.Helper()
	want, got := resp3Pair(t)
	var req []byte
	for _, cmd := range cmds {
		req = resp.AppendCommandStrings(req, cmd...)
	}
	var out [2][]byte
	for i, c := range []*rawConn{want, got} {
		c.send(req)
		for !bytes.HasSuffix(out[i], []byte("$3\r\nend\r\n")) {
			r := c.reply()
			if r == nil {
				t.Fatalf("connection closed after %q", out[i])
			}
			out[i] = append(out[i], r...)
		}
	}
	if w, g := maskID(out[0]), maskID(out[1]); !bytes.Equal(w, g) {
		t.Errorf("replies:\n proxy %q\n redis %q", g, w)
	}
}

// TestResp3MatchesStandalone: after HELLO 3 the proxy answers what a RESP3 Redis 7.0 answers, byte for byte:
// maps (HGETALL, CONFIG GET, CLIENT TRACKINGINFO), sets (SMEMBERS), doubles (scores), booleans and big
// numbers (scripts), verbatim strings, nulls (_), MGET across slots merged with RESP3 nulls, errors.
func TestResp3MatchesStandalone(t *testing.T) {
	want, got := resp3Pair(t)
	// Keys of every master, for MGET across slots.
	k0, k1, k2 := keyInRange("r3:m", 0, 5460), keyInRange("r3:m", 5461, 10922), keyInRange("r3:m", 10923, 16383)
	same(t, want, got, [][]string{{"DEL", "r3:s", "r3:h", "r3:set", "r3:z", "r3:l", "r3:h1", k0, k1, k2}})
	same(t, want, got, split(`
		SET r3:s hello
		GET r3:s
		GET r3:nosuch
		INCRBYFLOAT r3:f 1.5
		HSET r3:h f1 v1 f2 v2
		HGETALL r3:h
		HGETALL r3:nosuch
		HMGET r3:h f1 nosuch
		HSET r3:h1 f v
		HRANDFIELD r3:h1 -1 WITHVALUES
		SADD r3:set a
		SMEMBERS r3:set
		SMEMBERS r3:nosuch
		ZADD r3:z 1.5 a 2 b 1e20 c
		ZSCORE r3:z a
		ZSCORE r3:z c
		ZSCORE r3:z nosuch
		ZMSCORE r3:z a nosuch
		ZINCRBY r3:z 1 a
		ZRANGE r3:z 0 -1 WITHSCORES
		ZPOPMIN r3:z
		ZRANDMEMBER r3:nosuch
		LPOS r3:l x
		LPOP r3:nosuch
		XINFO STREAM r3:nosuch
		CLIENT GETNAME
		CLIENT TRACKINGINFO
		CONFIG GET maxmemory
		CONFIG GET nosuch
		PING
		ECHO hi
		NOSUCH
		GET
	`))
	same(t, want, got, [][]string{
		{"MSET", k0, "a", k2, "c"},
		{"MGET", k0, k1, k2, "r3:nosuch"},
		{"EXISTS", k0, k1, k2},
		{"EVAL", "redis.setresp(3); return true", "0"},
		{"EVAL", "redis.setresp(3); return false", "0"},
		{"EVAL", "return {big_number='1234567890123456789012345678901234567890'}", "0"},
		{"EVAL", "return {double=3.25}", "0"},
		{"EVAL", "return {map={a=1}}", "0"},
		{"EVAL", "return {set={a=true}}", "0"},
		{"EVAL", "return {verbatim_string={format='txt',string='hi'}}", "0"},
		{"EVAL", "redis.setresp(3); return redis.call('hgetall', KEYS[1])", "1", "r3:h"},
		{"EVAL", "return redis.call('nosuch')", "0"},
	})
}

// TestResp3ProxyOwnReplies: the replies the proxy builds itself have Redis's RESP3 shapes where the content
// cannot match the standalone server's (the connection's own address, the cluster's INFO).
func TestResp3ProxyOwnReplies(t *testing.T) {
	_, got := resp3Pair(t)
	for _, tc := range []struct {
		cmd    []string
		prefix string
		has    []string
	}{
		{[]string{"CLIENT", "INFO"}, "=", []string{"\r\ntxt:id=", " resp=3 ", "cmd=client|info"}},
		{[]string{"CLIENT", "LIST"}, "=", []string{"\r\ntxt:id=", " resp=3 "}},
		{[]string{"CLIENT", "LIST", "TYPE", "pubsub"}, "=4\r\ntxt:\r\n", nil},
		{[]string{"INFO", "server"}, "=", []string{"\r\ntxt:# Server\r\n", "redis_mode:standalone\r\n"}},
		{[]string{"INFO"}, "=", []string{"\r\ntxt:# Server\r\n", "cluster_enabled:0", "# Proxy\r\n"}},
		{[]string{"HELLO"}, "%7\r\n", []string{"$5\r\nproto\r\n:3\r\n", "$4\r\nmode\r\n$10\r\nstandalone\r\n",
			"$4\r\nrole\r\n$6\r\nmaster\r\n", "$7\r\nmodules\r\n*0\r\n"}},
	} {
		r := got.do(tc.cmd...)
		if !bytes.HasPrefix(r, []byte(tc.prefix)) {
			t.Errorf("%q = %q, want it to start %q", tc.cmd, r, tc.prefix)
		}
		for _, h := range tc.has {
			if !bytes.Contains(r, []byte(h)) {
				t.Errorf("%q = %q, want it to contain %q", tc.cmd, r, h)
			}
		}
		if r[0] == '=' {
			if _, _, ok := resp.VerbatimValue(r); !ok {
				t.Errorf("%q = %q: not one verbatim string", tc.cmd, r)
			}
		}
	}
	// HELLO's id is the connection's CLIENT ID.
	id := got.do("CLIENT", "ID")
	if hello := got.do("HELLO"); !bytes.Contains(hello, append([]byte("$2\r\nid\r\n"), id...)) {
		t.Errorf("HELLO = %q, want the id %q", hello, id)
	}
}

// TestResp3HelloBackAndReset: HELLO 2 goes back to RESP2 (its own reply is the RESP2 array), HELLO 3 AUTH
// SETNAME switches and names, RESET returns to RESP2 and clears the name; a switch with requests in flight
// takes effect where it stands, so the replies before it are RESP2 and the ones after RESP3.
func TestResp3HelloBackAndReset(t *testing.T) {
	want, got := resp3Pair(t)
	same(t, want, got, split(`
		HSET r3b:h f v
		HGETALL r3b:h
		HELLO 2
		HGETALL r3b:h
		CLIENT GETNAME
		HELLO 3 AUTH default x SETNAME r3name
		CLIENT GETNAME
		HGETALL r3b:h
		HELLO 3 AUTH nosuch x
		HELLO 4
		HELLO 3 SETNAME bad\x
		RESET
		HGETALL r3b:h
		CLIENT GETNAME
		HELLO 3
		ZADD r3b:z 2.5 m
		RESET
		ZSCORE r3b:z m
	`))
	// In one write: the switches wait for what was sent before them, so that a command after one never runs
	// before a command sent ahead of it on the other protocol's connections.
	pipelined3(t, split(`
		SET r3b:o 1
		HELLO 2
		GET r3b:o
		INCR r3b:o
		HELLO 3
		GET r3b:o
		INCR r3b:o
		RESET
		GET r3b:o
		HELLO 2
		HGETALL r3b:h
		ZSCORE r3b:z m
		HELLO 3
		HGETALL r3b:h
		ZSCORE r3b:z m
		HELLO 2
		ZSCORE r3b:z m
		HELLO 3
		RESET
		ZSCORE r3b:z m
		ECHO end
	`))
}

// TestResp3Transactions: EXEC's array holds RESP3 values (maps, doubles, nulls), a touched WATCH answers _,
// errors while queueing abort with EXECABORT, and a WATCH survives a switch of protocol.
func TestResp3Transactions(t *testing.T) {
	want, got := resp3Pair(t)
	addr, standalone, _ := shared(t)
	other := map[*rawConn]*rawConn{want: dialRaw(t, standalone.Addr), got: dialRaw(t, addr)}
	same(t, want, got, split(`
		DEL {r3t}h {r3t}z {r3t}w
		MULTI
		HSET {r3t}h f v
		HGETALL {r3t}h
		ZADD {r3t}z 1.5 m
		ZSCORE {r3t}z m
		GET {r3t}nosuch
		SMEMBERS {r3t}nosuch
		EXEC
		MULTI
		NOSUCH
		EXEC
		WATCH {r3t}w
		MULTI
		SET {r3t}w mine
		EXEC
		WATCH {r3t}w
		GET {r3t}w
	`))
	for _, c := range []*rawConn{want, got} {
		other[c].do("SET", "{r3t}w", "theirs")
	}
	same(t, want, got, split(`
		MULTI
		SET {r3t}w mine
		EXEC
		GET {r3t}w
		WATCH {r3t}w
		HELLO 2
		MULTI
		HGETALL {r3t}h
		EXEC
		HELLO 3
		WATCH {r3t}w
		HELLO 2
		HELLO 3
	`))
	for _, c := range []*rawConn{want, got} {
		other[c].do("SET", "{r3t}w", "again")
	}
	same(t, want, got, split(`
		MULTI
		HGETALL {r3t}h
		EXEC
		WATCH {r3t}w
		HELLO 2
		MULTI
		ZSCORE {r3t}z m
		EXEC
	`))
}

// TestResp3Blocking: the blocking commands answer in RESP3 (BZPOPMIN's score a double, a timeout _), and a
// client that leaves while the node pops for it gets what was popped put back, scores read from RESP3 doubles.
func TestResp3Blocking(t *testing.T) {
	want, got := resp3Pair(t)
	same(t, want, got, split(`
		DEL {r3k}l {r3k}z
		BLPOP {r3k}l 0.05
		BZPOPMIN {r3k}z 0.05
		BZMPOP 0.05 1 {r3k}z MIN
		RPUSH {r3k}l a b c
		ZADD {r3k}z 1.5 a 2 b 3.25 c
		BLPOP {r3k}l 0
		BLMPOP 0 1 {r3k}l RIGHT COUNT 5
		BZPOPMIN {r3k}z 0
		BZPOPMAX {r3k}z 0
		BZMPOP 0 1 {r3k}z MIN COUNT 5
	`))

	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	ctx := context.Background()
	snap := snapshotOf(srv)
	node := nodeByAddr(cl, snap.Nodes[snap.MasterOf(topology.Slot([]byte("{r3pb}")))].Addr).Client(t)
	c := newClient(addr)
	defer c.Close()
	for _, cmd := range []string{"BZPOPMIN {r3pb}z 0", "BZPOPMAX {r3pb}z 0", "BZMPOP 0 1 {r3pb}z MIN COUNT 2",
		"BLPOP {r3pb}z 0"} {
		c.Del(ctx, "{r3pb}z")
		push := []any{"ZADD", "{r3pb}z", "1.5", "a", "2", "b", "3.25", "c"}
		if strings.HasPrefix(cmd, "BLPOP") {
			push = []any{"RPUSH", "{r3pb}z", "a", "b", "c"}
		}
		before := srv.Stats().PutBack.Load()
		p := dialRaw(t, addr)
		p.do("HELLO", "3")
		p.send(resp.AppendCommandStrings(nil, splitOne(cmd)...))
		eventually(t, 5*time.Second, cmd+" blocked", func() bool { return blockedClients(cl) == 1 })
		busy := make(chan error, 1)
		go func() {
			script := `local s = redis.call('TIME')
				repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 500000
				return redis.call(unpack(ARGV))`
			busy <- node.Do(ctx, append([]any{"EVAL", script, 1, "{r3pb}z"}, push...)...).Err()
		}()
		time.Sleep(150 * time.Millisecond)
		p.c.Close()
		if err := <-busy; err != nil {
			t.Fatalf("%s: the script: %v", cmd, err)
		}
		eventually(t, 5*time.Second, cmd+": the pop put back", func() bool {
			return srv.Stats().PutBack.Load() == before+1
		})
		wantKeys := "[{1.5 a} {2 b} {3.25 c}]"
		gotKeys := fmt.Sprint(c.ZRangeWithScores(ctx, "{r3pb}z", 0, -1).Val())
		if strings.HasPrefix(cmd, "BLPOP") {
			wantKeys, gotKeys = "[a b c]", fmt.Sprint(c.LRange(ctx, "{r3pb}z", 0, -1).Val())
		}
		if gotKeys != wantKeys {
			t.Errorf("%s, client gone: %s, want %s", cmd, gotKeys, wantKeys)
		}
	}
}

// TestResp3PubSub: in RESP3 the (un)subscribe confirmations and the messages are push frames (>), nulls _,
// and a subscribed client may run any command, as in Redis 7.0; byte for byte with the standalone server.
func TestResp3PubSub(t *testing.T) {
	pipelined3(t, split(`
		SUBSCRIBE {r3p}a {r3p}b {r3p}a
		GET {r3p}x
		HGETALL {r3p}x
		PING
		PING hi
		SSUBSCRIBE {r3p}s1 {r3p}s2
		PSUBSCRIBE {r3p}p*
		CLIENT GETNAME
		UNSUBSCRIBE {r3p}b {r3p}zz
		PUNSUBSCRIBE
		SUNSUBSCRIBE {r3p}s2
		SUNSUBSCRIBE
		UNSUBSCRIBE
		UNSUBSCRIBE
		PUNSUBSCRIBE {r3p}x
		SUNSUBSCRIBE
		ECHO end
	`))

	addr, standalone, _ := shared(t)
	want, got := resp3Pair(t)
	pub := map[*rawConn]*rawConn{want: dialRaw(t, standalone.Addr), got: dialRaw(t, addr)}
	for _, c := range []*rawConn{want, got} {
		pub[c].do("HELLO", "3")
	}
	same(t, want, got, split(`
		SUBSCRIBE {r3p}m
		PSUBSCRIBE {r3p}q*
		SSUBSCRIBE {r3p}sm
	`))
	for _, p := range [][]string{{"PUBLISH", "{r3p}m", "one"}, {"PUBLISH", "{r3p}qx", "two"},
		{"SPUBLISH", "{r3p}sm", "three"}} {
		var frames [2][]byte
		for i, c := range []*rawConn{want, got} {
			// Not compared: a cluster's PUBLISH counts the subscribers of the node it reached only.
			pub[c].do(p...)
			frames[i] = c.reply()
		}
		if !bytes.Equal(frames[0], frames[1]) || frames[0][0] != '>' {
			t.Errorf("%q: subscriber got\n proxy %q\n redis %q", p, frames[1], frames[0])
		}
	}
	// Back to RESP2 while subscribed: the frames are arrays again, and subscribed mode restricts commands.
	same(t, want, got, split(`
		HELLO 2
		GET {r3p}x
		PING
	`))
	var frames [2][]byte
	for i, c := range []*rawConn{want, got} {
		pub[c].do("PUBLISH", "{r3p}m", "four")
		frames[i] = c.reply()
	}
	if !bytes.Equal(frames[0], frames[1]) || frames[0][0] != '*' {
		t.Errorf("message after HELLO 2:\n proxy %q\n redis %q", frames[1], frames[0])
	}
	same(t, want, got, split(`
		RESET
		GET {r3p}x
	`))
}

// TestResp3GoRedis: go-redis v9's NewClient speaks RESP3 by default (HELLO 3): its pipelines, transactions,
// WATCH, Pub/Sub, scripts, SCAN and maps work through the proxy with default options.
func TestResp3GoRedis(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	if info, err := c.ClientInfo(ctx).Result(); err != nil || info.Resp != 3 {
		t.Fatalf("CLIENT INFO = %+v, %v; want resp=3 (go-redis's default)", info, err)
	}
	c.Del(ctx, "{r3g}h", "{r3g}z", "{r3g}n")
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "{r3g}h", "a", "1", "b", "2")
		p.ZAdd(ctx, "{r3g}z", redis.Z{Score: 1.5, Member: "m"})
		p.HGetAll(ctx, "{r3g}h")
		p.ZScore(ctx, "{r3g}z", "m")
		p.Get(ctx, "{r3g}nosuch")
		return nil
	})
	if err != redis.Nil || len(cmds) != 5 {
		t.Fatalf("Pipelined: %v, %d commands", err, len(cmds))
	}
	if h := cmds[2].(*redis.MapStringStringCmd).Val(); h["a"] != "1" || h["b"] != "2" || len(h) != 2 {
		t.Errorf("HGETALL in a pipeline = %v", h)
	}
	if s := cmds[3].(*redis.FloatCmd).Val(); s != 1.5 {
		t.Errorf("ZSCORE in a pipeline = %v", s)
	}
	if h, err := c.HGetAll(ctx, "{r3g}h").Result(); err != nil || len(h) != 2 {
		t.Errorf("HGETALL = %v, %v", h, err)
	}
	tx, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "{r3g}n")
		p.ZIncrBy(ctx, "{r3g}z", 1, "m")
		p.HGetAll(ctx, "{r3g}h")
		return nil
	})
	if err != nil || tx[0].(*redis.IntCmd).Val() != 1 || tx[1].(*redis.FloatCmd).Val() != 2.5 ||
		len(tx[2].(*redis.MapStringStringCmd).Val()) != 2 {
		t.Errorf("TxPipelined = %v, %v", tx, err)
	}
	// WATCH with a conflict made by another client, then without.
	other := redis.NewClient(&redis.Options{Addr: addr})
	defer other.Close()
	conflict := true
	for i := 0; i < 2; i++ {
		err := c.Watch(ctx, func(x *redis.Tx) error {
			n, err := x.Get(ctx, "{r3g}n").Int()
			if err != nil {
				return err
			}
			if conflict {
				conflict = false
				other.Incr(ctx, "{r3g}n")
			}
			_, err = x.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "{r3g}n", n*10, 0)
				return nil
			})
			return err
		}, "{r3g}n")
		if i == 0 && err != redis.TxFailedErr {
			t.Errorf("WATCH with a conflict: %v, want %v", err, redis.TxFailedErr)
		}
		if i == 1 && err != nil {
			t.Errorf("WATCH: %v", err)
		}
	}
	if n, _ := c.Get(ctx, "{r3g}n").Int(); n != 20 {
		t.Errorf("after WATCH: n = %d, want 20", n)
	}
	if v, err := c.Eval(ctx, "redis.setresp(3); return redis.call('hgetall', KEYS[1])", []string{"{r3g}h"}).Result(); err != nil {
		t.Errorf("EVAL returning a map: %v, %v", v, err)
	} else if m, ok := v.(map[any]any); !ok || m["a"] != "1" {
		t.Errorf("EVAL returning a map: %#v", v)
	}
	if v, err := c.Eval(ctx, "redis.setresp(3); return true", nil).Bool(); err != nil || !v {
		t.Errorf("EVAL returning a boolean: %v, %v", v, err)
	}
	for i := 0; i < 20; i++ {
		c.Set(ctx, fmt.Sprintf("r3g:scan:%d", i), i, time.Minute)
	}
	seen := map[string]bool{}
	iter := c.Scan(ctx, 0, "r3g:scan:*", 5).Iterator()
	for iter.Next(ctx) {
		seen[iter.Val()] = true
	}
	if err := iter.Err(); err != nil || len(seen) != 20 {
		t.Errorf("SCAN found %d of 20 keys: %v", len(seen), err)
	}

	sub := c.Subscribe(ctx, "{r3g}ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if err := other.Publish(ctx, "{r3g}ch", "hi").Err(); err != nil {
		t.Errorf("PUBLISH: %v", err)
	}
	select {
	case m := <-sub.Channel():
		if m.Channel != "{r3g}ch" || m.Payload != "hi" {
			t.Errorf("message %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Error("no message")
	}
}
