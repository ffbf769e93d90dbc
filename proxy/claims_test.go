package proxy_test

// Tests for README claims that had none: every one compares what the proxy answers with what Redis answers
// (a standalone redis-server, or a cluster node asked directly) and checks the cluster's state on the nodes
// themselves, not through the proxy.

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// claimShard is one master of a cluster as CLUSTER SLOTS gives it: its first slot range and its replicas.
type claimShard struct {
	lo, hi   int
	master   *redistest.Server
	replicas []*redistest.Server
}

// claimShards asks a running node for CLUSTER SLOTS and returns one entry per master, ordered by its lowest
// slot. want is the number of masters the test needs.
func claimShards(t *testing.T, cl *redistest.Cluster, want int) []claimShard {
	t.Helper()
	masters := cl.Masters()
	if len(masters) != want {
		t.Fatalf("the cluster has %d masters, want %d", len(masters), want)
	}
	ranges, err := masters[0].Client(t).ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Start < ranges[j].Start })
	var out []claimShard
	seen := map[string]bool{}
	for _, r := range ranges {
		if seen[r.Nodes[0].Addr] {
			continue
		}
		seen[r.Nodes[0].Addr] = true
		sh := claimShard{lo: int(r.Start), hi: int(r.End), master: cl.Node(r.Nodes[0].Addr)}
		for _, n := range r.Nodes[1:] {
			sh.replicas = append(sh.replicas, cl.Node(n.Addr))
		}
		if sh.master == nil {
			t.Fatalf("CLUSTER SLOTS names %s, which is not a node of the cluster", r.Nodes[0].Addr)
		}
		out = append(out, sh)
	}
	if len(out) != want {
		t.Fatalf("CLUSTER SLOTS lists %d masters, want %d", len(out), want)
	}
	return out
}

// sameReply fails the test unless the proxy's reply is the same bytes as Redis's, and (when want is not
// empty) those bytes are want: a comparison of two wrong replies must not pass.
func sameReply(t *testing.T, what string, proxyReply, redisReply []byte, want string) {
	t.Helper()
	if !bytes.Equal(proxyReply, redisReply) {
		t.Fatalf("%s:\n proxy %q\n redis %q", what, proxyReply, redisReply)
	}
	if want != "" && string(proxyReply) != want {
		t.Fatalf("%s: proxy and Redis both answer %q, want %q", what, proxyReply, want)
	}
}

// onEveryMaster sends a command to each master directly and wants want from each.
func onEveryMaster(t *testing.T, shards []claimShard, want string, args ...string) {
	t.Helper()
	for _, sh := range shards {
		c := dialRaw(t, sh.master.Addr)
		if got := string(c.do(args...)); got != want {
			t.Fatalf("%q on master %s (slots %d-%d): %q, want %q", args, sh.master.Addr, sh.lo, sh.hi, got, want)
		}
	}
}

func bulk(s string) string { return string(resp.AppendBulkString(nil, s)) }

// cmdCalls reads the calls of one command from INFO commandstats of a node (0 if it never ran).
func cmdCalls(t *testing.T, s *redistest.Server, cmd string) int {
	t.Helper()
	info, err := s.DoString("INFO", "commandstats")
	if err != nil {
		t.Fatalf("%s INFO commandstats: %v", s.Addr, err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			v, _, _ := strings.Cut(rest, ",")
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: bad commandstats line %q", s.Addr, line)
			}
			return n
		}
	}
	return 0
}

// TestClaimFlushReachesEveryMaster: FLUSHALL and FLUSHDB, bare and with ASYNC / SYNC, answer what a
// standalone Redis answers (+OK), and when the reply arrives every master's DBSIZE is 0, asked of the masters
// themselves (before each flush every master holds keys).
func TestClaimFlushReachesEveryMaster(t *testing.T) {
	addr, standalone, cl := shared(t)
	shards := claimShards(t, cl, 3)
	px, sa := dialRaw(t, addr), dialRaw(t, standalone.Addr)
	for _, form := range [][]string{
		{"FLUSHALL"}, {"FLUSHDB"}, {"FLUSHALL", "ASYNC"}, {"FLUSHALL", "SYNC"}, {"FLUSHDB", "ASYNC"},
		{"FLUSHDB", "SYNC"}, {"flushall", "async"},
	} {
		name := strings.Join(form, " ")
		for _, sh := range shards {
			for i := range 5 {
				k := keyInRange(fmt.Sprintf("claim:flush:%s:%d:", name, i), sh.lo, sh.hi)
				sameReply(t, "SET "+k, px.do("SET", k, "v"), sa.do("SET", k, "v"), "+OK\r\n")
			}
			if n, err := sh.master.Do("DBSIZE"); err != nil || n.(int64) < 5 {
				t.Fatalf("before %s: DBSIZE on master %s = %v, %v; want >= 5", name, sh.master.Addr, n, err)
			}
		}
		sameReply(t, name, px.do(form...), sa.do(form...), "+OK\r\n")
		// The proxy answers once every master has: no waiting here.
		onEveryMaster(t, shards, ":0\r\n", "DBSIZE")
		sameReply(t, "DBSIZE after "+name, px.do("DBSIZE"), sa.do("DBSIZE"), ":0\r\n")
	}
	// A bad option is refused as Redis refuses it, and flushes nothing.
	k := keyInRange("claim:flush:kept:", shards[1].lo, shards[1].hi)
	sameReply(t, "SET "+k, px.do("SET", k, "v"), sa.do("SET", k, "v"), "+OK\r\n")
	sameReply(t, "FLUSHALL LATER", px.do("FLUSHALL", "LATER"), sa.do("FLUSHALL", "LATER"), "-ERR syntax error\r\n")
	sameReply(t, "DBSIZE after a refused FLUSHALL", px.do("DBSIZE"), sa.do("DBSIZE"), ":1\r\n")
}

// TestClaimScriptBroadcast: SCRIPT LOAD through the proxy loads the script on every master (SCRIPT EXISTS on
// each answers 1, EVALSHA through the proxy runs it for a key on each master), and SCRIPT FLUSH (bare and
// ASYNC) removes it from every master (each answers 0, EVALSHA gets NOSCRIPT). Replies equal a standalone
// Redis's byte for byte.
func TestClaimScriptBroadcast(t *testing.T) {
	addr, standalone, cl := shared(t)
	shards := claimShards(t, cl, 3)
	px, sa := dialRaw(t, addr), dialRaw(t, standalone.Addr)
	const script = "return redis.call('GET', KEYS[1]) .. ':' .. ARGV[1]"
	for round, flush := range [][]string{{"SCRIPT", "FLUSH"}, {"SCRIPT", "FLUSH", "ASYNC"}} {
		sha := px.do("SCRIPT", "LOAD", script)
		sameReply(t, "SCRIPT LOAD", sha, sa.do("SCRIPT", "LOAD", script), "")
		shaText, _, ok := resp.BulkValue(sha)
		if !ok || len(shaText) != 40 {
			t.Fatalf("SCRIPT LOAD answered %q, not a SHA1", sha)
		}
		onEveryMaster(t, shards, "*1\r\n:1\r\n", "SCRIPT", "EXISTS", string(shaText))
		sameReply(t, "SCRIPT EXISTS", px.do("SCRIPT", "EXISTS", string(shaText), "0000"),
			sa.do("SCRIPT", "EXISTS", string(shaText), "0000"), "*2\r\n:1\r\n:0\r\n")
		for i, sh := range shards {
			k := keyInRange(fmt.Sprintf("claim:script:%d:", round), sh.lo, sh.hi)
			v := fmt.Sprintf("v%d", i)
			sameReply(t, "SET "+k, px.do("SET", k, v), sa.do("SET", k, v), "+OK\r\n")
			sameReply(t, "EVALSHA on "+sh.master.Addr, px.do("EVALSHA", string(shaText), "1", k, "arg"),
				sa.do("EVALSHA", string(shaText), "1", k, "arg"), bulk(v+":arg"))
		}
		sameReply(t, strings.Join(flush, " "), px.do(flush...), sa.do(flush...), "+OK\r\n")
		onEveryMaster(t, shards, "*1\r\n:0\r\n", "SCRIPT", "EXISTS", string(shaText))
		for _, sh := range shards {
			k := keyInRange(fmt.Sprintf("claim:script:%d:", round), sh.lo, sh.hi)
			sameReply(t, "EVALSHA after SCRIPT FLUSH", px.do("EVALSHA", string(shaText), "1", k, "arg"),
				sa.do("EVALSHA", string(shaText), "1", k, "arg"), "-NOSCRIPT No matching script. Please use EVAL.\r\n")
		}
	}
}

// TestClaimFunctionBroadcast: FUNCTION LOAD through the proxy puts the library on every master (FUNCTION LIST
// on each equals a standalone Redis's, FCALL through the proxy runs it for a key on each master); FUNCTION
// DELETE and FUNCTION FLUSH empty every master's list; FUNCTION DUMP through the proxy and FUNCTION RESTORE of
// that payload bring it back everywhere. Every reply equals the standalone's byte for byte, errors included.
func TestClaimFunctionBroadcast(t *testing.T) {
	addr, standalone, cl := shared(t)
	shards := claimShards(t, cl, 3)
	px, sa := dialRaw(t, addr), dialRaw(t, standalone.Addr)
	saList := dialRaw(t, standalone.Addr)
	const lib = "#!lua name=claimlib\n" +
		"redis.register_function('claimget', function(keys, args) return redis.call('GET', keys[1]) .. '/' .. args[1] end)"
	both := func(want string, args ...string) []byte {
		t.Helper()
		g := px.do(args...)
		sameReply(t, strings.Join(args, " "), g, sa.do(args...), want)
		return g
	}
	listed := func(when string, want string) {
		t.Helper()
		if got := string(saList.do("FUNCTION", "LIST")); got != want {
			t.Fatalf("%s: standalone FUNCTION LIST %q, want %q", when, got, want)
		}
		onEveryMaster(t, shards, want, "FUNCTION", "LIST")
	}
	keys := make([]string, len(shards))
	for i, sh := range shards {
		keys[i] = keyInRange("claim:fn:", sh.lo, sh.hi)
		both("+OK\r\n", "SET", keys[i], fmt.Sprintf("v%d", i))
	}
	fcallEverywhere := func() {
		t.Helper()
		for i, k := range keys {
			both(bulk(fmt.Sprintf("v%d/a", i)), "FCALL", "claimget", "1", k, "a")
		}
	}

	both("+OK\r\n", "FUNCTION", "FLUSH")
	listed("after FUNCTION FLUSH", "*0\r\n")
	both(bulk("claimlib"), "FUNCTION", "LOAD", lib)
	withLib := string(saList.do("FUNCTION", "LIST"))
	if !strings.Contains(withLib, "claimget") {
		t.Fatalf("standalone FUNCTION LIST after LOAD: %q", withLib)
	}
	listed("after FUNCTION LOAD", withLib)
	fcallEverywhere()
	both("-ERR Library 'claimlib' already exists\r\n", "FUNCTION", "LOAD", lib)

	dump := both("", "FUNCTION", "DUMP")
	payload, null, ok := resp.BulkValue(dump)
	if !ok || null || len(payload) == 0 {
		t.Fatalf("FUNCTION DUMP: %q", dump)
	}

	both("+OK\r\n", "FUNCTION", "DELETE", "claimlib")
	listed("after FUNCTION DELETE", "*0\r\n")
	both("-ERR Function not found\r\n", "FCALL", "claimget", "1", keys[0], "a")
	both("-ERR Library not found\r\n", "FUNCTION", "DELETE", "claimlib")

	both("+OK\r\n", "FUNCTION", "RESTORE", string(payload))
	listed("after FUNCTION RESTORE", withLib)
	fcallEverywhere()
	both("-ERR Library claimlib already exists\r\n", "FUNCTION", "RESTORE", string(payload))

	both("+OK\r\n", "FUNCTION", "FLUSH", "SYNC")
	listed("after FUNCTION FLUSH SYNC", "*0\r\n")
	both("-ERR Function not found\r\n", "FCALL", "claimget", "1", keys[2], "a")
}

// TestClaimPublishReachesEveryNode: PUBLISH through the proxy answers :1, as a cluster node with one local
// subscriber does (and a standalone Redis with one), and a subscriber connected directly to each of the six
// nodes receives each message published through the proxy once, in order with a node's own PUBLISH.
func TestClaimPublishReachesEveryNode(t *testing.T) {
	addr, standalone, cl := shared(t)
	const ch = "claim:chan"
	subscribe := func(n *redistest.Server) *rawConn {
		s := dialRaw(t, n.Addr)
		want := "*3\r\n" + bulk("subscribe") + bulk(ch) + ":1\r\n"
		if got := string(s.do("SUBSCRIBE", ch)); got != want {
			t.Fatalf("SUBSCRIBE on %s: %q, want %q", n.Addr, got, want)
		}
		return s
	}
	subs := make([]*rawConn, len(cl.Nodes))
	for i, n := range cl.Nodes {
		subs[i] = subscribe(n)
	}
	saSub := subscribe(standalone)
	px := dialRaw(t, addr)
	received := func(m string) {
		t.Helper()
		want := "*3\r\n" + bulk("message") + bulk(ch) + bulk(m)
		for i, s := range subs {
			if got := string(s.reply()); got != want {
				t.Fatalf("subscriber on %s: %q, want %q", cl.Nodes[i].Addr, got, want)
			}
		}
	}
	viaProxy := px.do("PUBLISH", ch, "first through the proxy")
	if string(viaProxy) != ":1\r\n" {
		t.Fatalf("PUBLISH through the proxy: %q, want :1 (one subscriber on the node that took it)", viaProxy)
	}
	received("first through the proxy")
	viaNode := dialRaw(t, cl.Nodes[len(cl.Nodes)-1].Addr).do("PUBLISH", ch, "from a replica")
	received("from a replica") // a second copy of the first message would show here
	sameReply(t, "PUBLISH (vs a cluster node)", viaProxy, viaNode, ":1\r\n")
	viaStandalone := dialRaw(t, standalone.Addr).do("PUBLISH", ch, "standalone")
	if got, want := string(saSub.reply()), "*3\r\n"+bulk("message")+bulk(ch)+bulk("standalone"); got != want {
		t.Fatalf("standalone subscriber: %q, want %q", got, want)
	}
	sameReply(t, "PUBLISH (vs a standalone Redis)", viaProxy, viaStandalone, ":1\r\n")
	for i := range 3 {
		m := fmt.Sprintf("again %d", i)
		if got := string(px.do("PUBLISH", ch, m)); got != ":1\r\n" {
			t.Fatalf("PUBLISH %q through the proxy: %q, want :1", m, got)
		}
		received(m)
	}
	// Nobody subscribes to this one: 0, as Redis says.
	sameReply(t, "PUBLISH to no subscriber", px.do("PUBLISH", "claim:nobody", "x"),
		dialRaw(t, standalone.Addr).do("PUBLISH", "claim:nobody", "x"), ":0\r\n")
}

// TestClaimResetClearsName: RESET answers +RESET as Redis does, and CLIENT GETNAME afterwards answers the null
// bulk as Redis does (also when the name came from HELLO SETNAME); the connection keeps serving.
func TestClaimResetClearsName(t *testing.T) {
	addr, standalone, _ := shared(t)
	px, sa := dialRaw(t, addr), dialRaw(t, standalone.Addr)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "SETNAME", "claim-reset"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, bulk("claim-reset")},
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
	}
	for _, st := range steps {
		sameReply(t, strings.Join(st.args, " "), px.do(st.args...), sa.do(st.args...), st.want)
	}
	// HELLO 2 SETNAME names the connection too; RESET clears that name as well.
	if got := string(px.do("HELLO", "2", "SETNAME", "claim-hello")); !strings.HasPrefix(got, "*14\r\n") {
		t.Fatalf("HELLO 2 SETNAME: %q", got)
	}
	sa.do("HELLO", "2", "SETNAME", "claim-hello")
	for _, st := range []struct {
		args []string
		want string
	}{
		{[]string{"CLIENT", "GETNAME"}, bulk("claim-hello")},
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
	} {
		sameReply(t, strings.Join(st.args, " "), px.do(st.args...), sa.do(st.args...), st.want)
	}
	checkServes(t, px, "claim-reset")
}

// clientFields splits one CLIENT LIST line into its keys in order and its values.
func clientFields(line string) ([]string, map[string]string) {
	var keys []string
	vals := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		keys = append(keys, k)
		vals[k] = v
	}
	return keys, vals
}

// TestClientListAndKill: CLIENT LIST lists every client of the proxy, over its two event loops, by id, each
// line with a standalone Redis's fields in its order and the values of that connection (id, addr, laddr,
// name, flags N/P/x, sub, multi, cmd); the TYPE and ID filters select as Redis's do. CLIENT KILL closes the
// clients that match (ID, ADDR, old form ip:port, TYPE pubsub, SKIPME), a blocked one included (its leased
// connection is given back), answers as Redis does (a count, +OK, the same errors), and a client that kills
// itself is closed after its reply.
func TestClientListAndKill(t *testing.T) {
	_, standalone, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 2 })
	sa := dialRaw(t, standalone.Addr)
	saText, _, _ := resp.BulkValue(sa.do("CLIENT", "INFO"))
	redisKeys, _ := clientFields(string(saText))
	if len(redisKeys) < 20 || redisKeys[0] != "id" {
		t.Fatalf("standalone CLIENT INFO line: %q", saText)
	}
	names := []string{"kill-a", "kill-b", "", "kill-d", "kill-e"}
	conns := make([]*rawConn, len(names))
	ids := make([]string, len(names))
	for i, name := range names {
		conns[i] = dialRaw(t, addr)
		if name != "" {
			sameReply(t, "CLIENT SETNAME", conns[i].do("CLIENT", "SETNAME", name), sa.do("CLIENT", "SETNAME", name), "+OK\r\n")
		}
		ids[i] = strings.TrimSpace(strings.TrimPrefix(string(conns[i].do("CLIENT", "ID")), ":"))
	}
	if got := string(conns[1].do("SUBSCRIBE", "kill-ch")); !strings.Contains(got, "kill-ch") {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	conns[2].do("MULTI")
	conns[2].do("SET", "kill:k", "v")
	conns[2].do("GET", "kill:k")
	if n := leasedConns(srv); n != 1 {
		t.Fatalf("%d leased connections, want the subscriber's 1", n)
	}
	conns[4].send(resp.AppendCommandStrings(nil, "BLPOP", "kill:nothing", "0"))
	eventually(t, 5*time.Second, "the BLPOP holds a leased connection", func() bool { return leasedConns(srv) == 2 })

	list := func(c *rawConn, args ...string) map[string]map[string]string {
		t.Helper()
		text, null, ok := resp.BulkValue(c.do(append([]string{"CLIENT", "LIST"}, args...)...))
		if !ok || null {
			t.Fatalf("CLIENT LIST %v: not a bulk string", args)
		}
		byID := map[string]map[string]string{}
		last := -1
		for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
			if line == "" {
				continue
			}
			keys, vals := clientFields(line)
			// Redis 7.2 added lib-name and lib-ver at the end; the proxy takes CLIENT SETINFO, so it has them.
			if !slices.Equal(keys, append(slices.Clone(redisKeys), "lib-name", "lib-ver")) {
				t.Fatalf("CLIENT LIST fields %v, Redis gives %v", keys, redisKeys)
			}
			if id := atoi(vals["id"]); id <= last {
				t.Fatalf("CLIENT LIST not ordered by id: %q", text)
			} else {
				last = id
			}
			byID[vals["id"]] = vals
		}
		return byID
	}
	all := list(conns[0])
	if len(all) != len(conns) {
		t.Fatalf("CLIENT LIST has %d clients, want the %d open: %v", len(all), len(conns), all)
	}
	want := []map[string]string{
		{"flags": "N", "cmd": "client|list", "sub": "0", "multi": "-1"},
		{"flags": "P", "cmd": "subscribe", "sub": "1", "multi": "-1"},
		{"flags": "x", "cmd": "get", "sub": "0", "multi": "2"},
		{"flags": "N", "cmd": "client|id", "sub": "0", "multi": "-1"},
		{"flags": "b", "cmd": "blpop", "sub": "0", "multi": "-1"},
	}
	for i, c := range conns {
		vals := all[ids[i]]
		want[i]["addr"], want[i]["laddr"] = c.c.LocalAddr().String(), c.c.RemoteAddr().String()
		want[i]["name"], want[i]["user"], want[i]["db"], want[i]["resp"] = names[i], "default", "0", "2"
		for k, v := range want[i] {
			if vals[k] != v {
				t.Errorf("client %d: %s=%q, want %q (%v)", i, k, vals[k], v, vals)
			}
		}
	}
	if got := list(conns[0], "TYPE", "pubsub"); len(got) != 1 || got[ids[1]] == nil {
		t.Errorf("CLIENT LIST TYPE pubsub: %v, want the subscriber only", got)
	}
	if got := list(conns[0], "TYPE", "normal"); len(got) != 4 || got[ids[1]] != nil {
		t.Errorf("CLIENT LIST TYPE normal: %v, want all but the subscriber", got)
	}
	if got := list(conns[3], "ID", ids[0], ids[4], "999999"); len(got) != 2 || got[ids[0]] == nil || got[ids[4]] == nil {
		t.Errorf("CLIENT LIST ID: %v", got)
	}
	// With ID, in the order given, a repeated id repeated, as Redis answers.
	text, _, _ := resp.BulkValue(conns[3].do("CLIENT", "LIST", "ID", ids[4], "999999", ids[0], ids[4]))
	var order []string
	for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		_, vals := clientFields(line)
		order = append(order, vals["id"])
	}
	if !slices.Equal(order, []string{ids[4], ids[0], ids[4]}) {
		t.Errorf("CLIENT LIST ID %s 999999 %s %s listed ids %v", ids[4], ids[0], ids[4], order)
	}

	// Errors as Redis gives them.
	for _, args := range [][]string{
		{"CLIENT", "KILL", "1.2.3.4:5"}, {"CLIENT", "KILL", "ID", "0"}, {"CLIENT", "KILL", "ID", "abc"},
		{"CLIENT", "KILL", "TYPE", "foo"}, {"CLIENT", "KILL", "USER", "nobody"}, {"CLIENT", "KILL", "ADDR"},
		{"CLIENT", "KILL", "ID", "1", "TYPE"}, {"CLIENT", "KILL", "SKIPME", "maybe"}, {"CLIENT", "KILL", "FOO", "bar"},
		{"CLIENT", "KILL"}, {"CLIENT", "KILL", "ID", "999999"}, {"CLIENT", "KILL", "ADDR", "1.2.3.4:5"},
		{"CLIENT", "KILL", "USER", "default", "TYPE", "master"}, {"CLIENT", "KILL", "TYPE", "normal", "TYPE", "master"},
	} {
		sameReply(t, strings.Join(args, " "), conns[0].do(args...), sa.do(args...), "")
	}
	// Killing oneself is skipped unless SKIPME no.
	if got := string(conns[0].do("CLIENT", "KILL", "ID", ids[0])); got != ":0\r\n" {
		t.Errorf("CLIENT KILL ID <own>: %q, want :0 (SKIPME yes by default)", got)
	}

	gone := func(i int) {
		t.Helper()
		_ = conns[i].c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := conns[i].r.Read(make([]byte, 1)); err == nil {
			t.Errorf("client %d still open after CLIENT KILL (read %d bytes)", i, n)
		}
	}
	// A pipelined PING after the KILL is answered after it, in order.
	conns[0].send(append(resp.AppendCommandStrings(nil, "CLIENT", "KILL", "ID", ids[3]), resp.AppendCommandStrings(nil, "PING")...))
	if got, pong := string(conns[0].reply()), string(conns[0].reply()); got != ":1\r\n" || pong != "+PONG\r\n" {
		t.Errorf("CLIENT KILL ID then PING: %q %q", got, pong)
	}
	gone(3)
	if got := string(conns[0].do("CLIENT", "KILL", "TYPE", "pubsub")); got != ":1\r\n" {
		t.Errorf("CLIENT KILL TYPE pubsub: %q", got)
	}
	gone(1)
	if got := string(conns[0].do("CLIENT", "KILL", conns[2].c.LocalAddr().String())); got != "+OK\r\n" {
		t.Errorf("CLIENT KILL ip:port: %q", got)
	}
	gone(2)
	if got := string(conns[0].do("CLIENT", "KILL", "ADDR", conns[4].c.LocalAddr().String(), "USER", "default")); got != ":1\r\n" {
		t.Errorf("CLIENT KILL ADDR of the blocked client: %q", got)
	}
	gone(4)
	eventually(t, 5*time.Second, "the killed clients' leased connections are given back", func() bool { return leasedConns(srv) == 0 })
	if got := list(conns[0]); len(got) != 1 {
		t.Errorf("after the kills CLIENT LIST has %v", got)
	}
	// A client that kills itself gets the reply, and nothing it sent after runs (as in Redis).
	conns[0].send(append(resp.AppendCommandStrings(nil, "CLIENT", "KILL", "ID", ids[0], "SKIPME", "no"),
		resp.AppendCommandStrings(nil, "SET", "kill:after", "ran")...))
	if got := string(conns[0].reply()); got != ":1\r\n" {
		t.Errorf("CLIENT KILL ID <own> SKIPME no: %q", got)
	}
	gone(0)
	if got := string(mustDo(t, addr, "EXISTS", "kill:after")); got != ":0\r\n" {
		t.Errorf("the SET pipelined after a client killed itself ran: EXISTS %q", got)
	}
}

// leasedConns is how many connections the proxy's clients hold leased now.
func leasedConns(srv *proxy.Server) int {
	n := 0
	for _, st := range srv.NodeStats() {
		n += st.Leased
	}
	return n
}

// TestClaimClusterRefusals: SWAPDB, MOVE and SELECT n get the exact errors a cluster node gives (asked of the
// master that owns the key, so its answer is not a MOVED).
func TestClaimClusterRefusals(t *testing.T) {
	addr, _, cl := shared(t)
	shards := claimShards(t, cl, 3)
	px, node := dialRaw(t, addr), dialRaw(t, shards[0].master.Addr)
	k := keyInRange("claim:refuse:", shards[0].lo, shards[0].hi)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"SWAPDB", "0", "1"}, "-ERR SWAPDB is not allowed in cluster mode\r\n"},
		{[]string{"SWAPDB", "0", "0"}, "-ERR SWAPDB is not allowed in cluster mode\r\n"},
		{[]string{"SWAPDB", "x", "y"}, "-ERR SWAPDB is not allowed in cluster mode\r\n"},
		{[]string{"swapdb", "1", "0"}, "-ERR SWAPDB is not allowed in cluster mode\r\n"},
		{[]string{"SWAPDB", "0"}, "-ERR wrong number of arguments for 'swapdb' command\r\n"},
		{[]string{"MOVE", k, "1"}, "-ERR MOVE is not allowed in cluster mode\r\n"},
		{[]string{"SELECT", "1"}, "-ERR SELECT is not allowed in cluster mode\r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
	} {
		sameReply(t, strings.Join(c.args, " "), px.do(c.args...), node.do(c.args...), c.want)
	}
}

// TestClaimReadFromReplica: with read_from replica on a 3+3 cluster, 300 GETs through the proxy of keys on
// all three shards read back exactly what was written, INFO commandstats counts every one of them on the
// replica of the key's shard and none on any master, and the 300 SETs before them ran on the masters.
func TestClaimReadFromReplica(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	shards := claimShards(t, cl, 3)
	for _, sh := range shards {
		if len(sh.replicas) != 1 {
			t.Fatalf("master %s has replicas %v, want 1", sh.master.Addr, sh.replicas)
		}
	}
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.ReadFrom = "replica" })
	for _, sh := range snapshotOf(srv).Shards {
		if len(sh.Replicas) != 1 {
			t.Fatalf("the proxy's map has shards %+v: want one replica each", snapshotOf(srv).Shards)
		}
	}
	const perShard = 100
	px := dialRaw(t, addr)
	setsBefore, getsBefore := map[*redistest.Server]int{}, map[*redistest.Server]int{}
	for _, n := range cl.Nodes {
		setsBefore[n], getsBefore[n] = cmdCalls(t, n, "set"), cmdCalls(t, n, "get")
	}
	key := func(sh claimShard, i int) string { return keyInRange(fmt.Sprintf("claim:rf:%d:", i), sh.lo, sh.hi) }
	for _, sh := range shards {
		for i := range perShard {
			if got := string(px.do("SET", key(sh, i), "v"+strconv.Itoa(i))); got != "+OK\r\n" {
				t.Fatalf("SET: %q", got)
			}
		}
	}
	for _, sh := range shards {
		if d := cmdCalls(t, sh.master, "set") - setsBefore[sh.master]; d != perShard {
			t.Fatalf("master %s ran %d SETs, want %d", sh.master.Addr, d, perShard)
		}
	}
	// Replica reads may be stale: wait until each replica has applied its master's stream.
	for _, sh := range shards {
		eventually(t, 10*time.Second, "replica "+sh.replicas[0].Addr+" catches up", func() bool {
			m, _ := sh.master.DoString("INFO", "replication")
			r, _ := sh.replicas[0].DoString("INFO", "replication")
			mo, ro := infoField(m, "master_repl_offset"), infoField(r, "slave_repl_offset")
			return mo != "" && mo == ro
		})
	}
	for _, sh := range shards {
		for i := range perShard {
			if got, want := string(px.do("GET", key(sh, i))), bulk("v"+strconv.Itoa(i)); got != want {
				t.Fatalf("GET %s: %q, want %q", key(sh, i), got, want)
			}
		}
	}
	for _, sh := range shards {
		if d := cmdCalls(t, sh.master, "get") - getsBefore[sh.master]; d != 0 {
			t.Errorf("master %s served %d GETs, want 0", sh.master.Addr, d)
		}
		r := sh.replicas[0]
		if d := cmdCalls(t, r, "get") - getsBefore[r]; d != perShard {
			t.Errorf("replica %s served %d GETs of its shard's keys, want %d", r.Addr, d, perShard)
		}
	}
}

// TestClaimConnsPerNode: with conns_per_node 3 and 2 event loops, 24 concurrent clients SET and GET 20 keys
// on each master and read back exactly what they wrote; the proxy then holds exactly 3 × 2 = 6 backend
// connections to each master, and none to the replicas (read_from master).
func TestClaimConnsPerNode(t *testing.T) {
	_, _, cl := shared(t)
	shards := claimShards(t, cl, 3)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.ConnsPerNode = 3 })
	const clients, perShard = 24, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1,
				ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
			defer rc.Close()
			ctx := context.Background()
			for i := range perShard {
				for _, sh := range shards {
					k := keyInRange(fmt.Sprintf("claim:cpn:%d:%d:", c, i), sh.lo, sh.hi)
					v := fmt.Sprintf("%s=%d/%d", k, c, i)
					if err := rc.Set(ctx, k, v, 0).Err(); err != nil {
						errs <- fmt.Errorf("SET %s: %w", k, err)
						return
					}
					if got, err := rc.Get(ctx, k).Result(); err != nil || got != v {
						errs <- fmt.Errorf("GET %s = %q, %v; want %q", k, got, err, v)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var conns map[string]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		conns = srv.BackendConns()
		ok := len(conns) == len(shards)
		for _, sh := range shards {
			ok = ok && conns[sh.master.Addr] == 3*2
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend connections per node %v: want exactly 6 (3 per node × 2 loops) to each master %v, none elsewhere",
				conns, cl.Masters())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClaimMaxRedirects: two masters made to point at each other for one empty slot (CLUSTER SETSLOT <slot>
// NODE <other> on the owner, so it answers MOVED to the other, which answers MOVED back) bounce a GET
// forever; the proxy follows exactly max_redirects MOVEDs (1, 3, and the default 5, one proxy each) and then
// answers "-ERR too many redirects (N) for slot S: last MOVED from A to B" with the configured N.
func TestClaimMaxRedirects(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	shards := claimShards(t, cl, 3)
	a, b := shards[0].master, shards[1].master
	k := keyInRange("claim:loop:", shards[0].lo, shards[0].hi)
	slot := int(topology.Slot([]byte(k)))
	idB, err := b.DoString("CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	// The owner hands the slot (no keys in it) to b in its own view only; b still believes a owns it.
	if got, err := a.DoString("CLUSTER", "SETSLOT", strconv.Itoa(slot), "NODE", idB); err != nil || got != "OK" {
		t.Fatalf("CLUSTER SETSLOT %d NODE %s on %s: %q, %v", slot, idB, a.Addr, got, err)
	}
	movedTo := func(n *redistest.Server) string { return fmt.Sprintf("-MOVED %d %s\r\n", slot, n.Addr) }
	ra, rb := dialRaw(t, a.Addr), dialRaw(t, b.Addr)
	if got := string(ra.do("GET", k)); got != movedTo(b) {
		t.Fatalf("GET %s on %s: %q, want %q", k, a.Addr, got, movedTo(b))
	}
	if got := string(rb.do("GET", k)); got != movedTo(a) {
		t.Fatalf("GET %s on %s: %q, want %q", k, b.Addr, got, movedTo(a))
	}
	for _, n := range []int{1, 3, -1} {
		want := n
		tweak := func(c *proxy.Config) {
			c.RefreshInterval = proxy.Duration(time.Hour)
			if n >= 0 {
				c.MaxRedirects = n
			}
		}
		if n < 0 {
			want = proxy.Default().MaxRedirects
			if want != 5 {
				t.Fatalf("default max_redirects is %d; README and proxy.yaml say 5", want)
			}
		}
		t.Run(fmt.Sprintf("max_redirects=%d", want), func(t *testing.T) {
			addr, srv := startProxyOpt(t, cl.Addrs()[2:3], false, tweak)
			// Wherever the proxy starts, the last hop is a → b or b → a.
			texts := []string{
				fmt.Sprintf("-ERR too many redirects (%d) for slot %d: last MOVED from %s to %s\r\n", want, slot, a.Addr, b.Addr),
				fmt.Sprintf("-ERR too many redirects (%d) for slot %d: last MOVED from %s to %s\r\n", want, slot, b.Addr, a.Addr),
			}
			px := dialRaw(t, addr)
			before := srv.BackendStats()
			for range 3 {
				if got := string(px.do("GET", k)); !slices.Contains(texts, got) {
					t.Fatalf("GET %s of a slot in a MOVED loop: %q, want one of %q", k, got, texts)
				}
			}
			st := srv.BackendStats()
			if moved := st.Moved - before.Moved; moved != int64(3*want) {
				t.Errorf("%d MOVEDs followed for 3 requests, want %d", moved, 3*want)
			}
			checkServes(t, px, fmt.Sprintf("claim-redirects-%d", want))
		})
	}
}
