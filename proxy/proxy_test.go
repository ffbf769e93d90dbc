package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/topology"
)

// keyInRange returns a key with the given prefix whose slot lies in [lo, hi].
func keyInRange(prefix string, lo, hi int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if s := int(topology.Slot([]byte(k))); s >= lo && s <= hi {
			return k
		}
	}
}

func TestSetGetOnEveryMaster(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	// redis-cli --cluster create gives the three masters these ranges.
	for _, r := range [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}} {
		k := keyInRange("name", r[0], r[1])
		if got, err := c.Set(ctx, k, "zhangsan", 0).Result(); err != nil || got != "OK" {
			t.Fatalf("SET %s (slot %d) = %q, %v; want OK", k, topology.Slot([]byte(k)), got, err)
		}
		if got, err := c.Get(ctx, k).Result(); err != nil || got != "zhangsan" {
			t.Fatalf("GET %s (slot %d) = %q, %v; want zhangsan", k, topology.Slot([]byte(k)), got, err)
		}
	}
}

// differential runs each command on the standalone server and through the proxy and wants the same bytes.
func differential(t testing.TB, cmds [][]string) {
	t.Helper()
	addr, standalone, _ := shared(t)
	want := dialRaw(t, standalone.Addr)
	got := dialRaw(t, addr)
	for _, cmd := range cmds {
		w := want.do(cmd...)
		g := got.do(cmd...)
		if !bytes.Equal(w, g) {
			t.Errorf("%q:\n proxy  %q\n redis  %q", cmd, g, w)
		}
	}
}

func split(lines string) [][]string {
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, strings.Fields(l))
		}
	}
	return out
}

func TestDataTypesMatchStandalone(t *testing.T) {
	differential(t, split(`
		SET dt:s hello
		GET dt:s
		APPEND dt:s world
		STRLEN dt:s
		GETRANGE dt:s 0 3
		SETRANGE dt:s 0 J
		SETNX dt:s x
		GETSET dt:s y
		GETDEL dt:s
		GET dt:s
		SET dt:e v EX 100
		TTL dt:e
		PERSIST dt:e
		TTL dt:e
		INCR dt:n
		INCRBY dt:n 10
		DECR dt:n
		INCRBYFLOAT dt:f 1.5
		INCR dt:e
		LPUSH dt:l a b c
		RPUSH dt:l d
		LRANGE dt:l 0 -1
		LLEN dt:l
		LPOP dt:l
		RPOP dt:l
		LINDEX dt:l 0
		LSET dt:l 0 z
		LINSERT dt:l BEFORE z q
		LREM dt:l 1 q
		LPOS dt:l z
		LTRIM dt:l 0 0
		LRANGE dt:l 0 -1
		GET dt:l
		HSET dt:h f1 v1 f2 v2
		HGET dt:h f1
		HGETALL dt:h
		HMGET dt:h f1 f2 f3
		HINCRBY dt:h n 5
		HKEYS dt:h
		HVALS dt:h
		HLEN dt:h
		HEXISTS dt:h f1
		HDEL dt:h f1
		HSTRLEN dt:h f2
		SADD dt:set 1 2 3
		SCARD dt:set
		SISMEMBER dt:set 1
		SMISMEMBER dt:set 1 9
		SREM dt:set 1
		SMEMBERS dt:set
		SADD {dt}a 1 2 3
		SADD {dt}b 2 3 4
		SINTER {dt}a {dt}b
		SUNIONSTORE {dt}c {dt}a {dt}b
		SCARD {dt}c
		SMOVE {dt}a {dt}b 1
		ZADD dt:z 1 a 2 b 3 c
		ZRANGE dt:z 0 -1 WITHSCORES
		ZSCORE dt:z b
		ZINCRBY dt:z 2 a
		ZRANK dt:z a
		ZREVRANGE dt:z 0 1
		ZRANGEBYSCORE dt:z 1 3
		ZCOUNT dt:z 0 10
		ZREM dt:z c
		ZPOPMIN dt:z
		ZCARD dt:z
		ZADD dt:z x a
		ZADD {dz}a 1 m 2 n
		ZADD {dz}b 3 n 4 o
		ZUNIONSTORE {dz}d 2 {dz}a {dz}b WEIGHTS 1 2
		ZRANGE {dz}d 0 -1 WITHSCORES
		ZINTERCARD 2 {dz}a {dz}b
		XADD dt:x 1-1 f v
		XADD dt:x 2-1 f w
		XLEN dt:x
		XRANGE dt:x - +
		XREVRANGE dt:x + - COUNT 1
		XREAD COUNT 1 STREAMS dt:x 0
		XGROUP CREATE dt:x g 0
		XREADGROUP GROUP g c COUNT 1 STREAMS dt:x >
		XACK dt:x g 1-1
		XPENDING dt:x g
		XDEL dt:x 1-1
		XTRIM dt:x MAXLEN 0
		XLEN dt:x
		PFADD dt:hll a b c
		PFCOUNT dt:hll
		PFADD {dp}a 1 2
		PFADD {dp}b 2 3
		PFMERGE {dp}c {dp}a {dp}b
		PFCOUNT {dp}c
		GEOADD dt:g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
		GEODIST dt:g Palermo Catania km
		GEOPOS dt:g Palermo
		GEOSEARCH dt:g FROMMEMBER Palermo BYRADIUS 200 km ASC
		SETBIT dt:b 7 1
		GETBIT dt:b 7
		BITCOUNT dt:b
		BITPOS dt:b 1
		BITFIELD dt:b GET u8 0
		TYPE dt:l
		TYPE dt:h
		TYPE dt:z
		TYPE dt:x
		TYPE dt:nosuch
		OBJECT ENCODING dt:l
		SET {dr}a 1
		RENAME {dr}a {dr}b
		RENAME {dr}a {dr}b
		GET {dr}b
		COPY {dr}b {dr}c
		GET {dr}c
		EXPIRE dt:nosuch 10
		EVAL return(1) 0
		EVAL return(redis.call('get',KEYS[1])) 1 {dr}c
		SORT dt:set
		PING
		PING hi
		ECHO hello
		SELECT 0
		SELECT x
		GET
		SET a
		NOSUCHCOMMAND a b
		CLIENT NOSUCH
		OBJECT
		HELLO x
		AUTH pw
		AUTH default pw
		AUTH someone pw
	`))
}

func TestMultiKeyMatchesStandalone(t *testing.T) {
	var keys []string
	for i := 0; i < 100; i++ {
		keys = append(keys, fmt.Sprintf("mk:%d", i))
	}
	slots := map[uint16]bool{}
	for _, k := range keys {
		slots[topology.Slot([]byte(k))] = true
	}
	if len(slots) < 90 {
		t.Fatalf("keys span only %d slots", len(slots))
	}
	mset := []string{"MSET"}
	for i, k := range keys {
		mset = append(mset, k, strconv.Itoa(i))
	}
	mget := append([]string{"MGET"}, keys...)
	mget = append(mget, "mk:missing", keys[0])
	withDups := append(append([]string{}, keys[:50]...), keys[:10]...)
	withDups = append(withDups, "mk:missing")
	cmds := [][]string{
		mget,
		mset,
		mget,
		append([]string{"EXISTS"}, withDups...),
		append([]string{"TOUCH"}, withDups...),
		append([]string{"DEL"}, withDups...),
		mget,
		append([]string{"UNLINK"}, keys[40:]...),
		append([]string{"EXISTS"}, keys...),
		mget,
		{"MSET", "mk:a", "1", "mk:b"},
		{"MGET"},
		{"DEL"},
		{"MSET", "mk:a", "1", "mk:a", "2", "mk:b", "3"},
		{"MGET", "mk:a", "mk:b"},
		{"SET", "mk:list", "x"},
		{"LPUSH", "mk:l", "x"},
		{"MGET", "mk:a", "mk:l", "mk:b"},
	}
	// Around the number of parts a split looks through before it uses the slot table: keys in 15 to 18
	// slots, repeated after the switch so that parts made before it are found through the table.
	var apart []string // keys in distinct slots
	seen := map[uint16]bool{}
	for _, k := range keys {
		if s := topology.Slot([]byte(k)); !seen[s] {
			seen[s] = true
			apart = append(apart, k)
		}
	}
	keys = apart
	for n := 15; n <= 18; n++ {
		set, get := []string{"MSET"}, []string{"MGET"}
		for i := n - 1; i >= 0; i-- {
			set = append(set, keys[i], fmt.Sprintf("%d/%d", n, i))
		}
		for i := 0; i < n+3; i++ {
			set = append(set, keys[i%3], fmt.Sprintf("%d/again/%d", n, i))
			get = append(get, keys[(i*7)%n])
		}
		cmds = append(cmds, set, get, append([]string{"DEL"}, get[1:]...), get)
	}
	differential(t, cmds)
}

// TestCrossSlotLikeCluster: multi-key commands the proxy cannot split answer as a cluster node does.
func TestCrossSlotLikeCluster(t *testing.T) {
	addr, _, cluster := shared(t)
	node := dialRaw(t, cluster.Addrs()[0])
	px := dialRaw(t, addr)
	for _, cmd := range [][]string{
		{"MSETNX", "cs:a", "1", "cs:b", "2"},
		{"RENAME", "cs:a", "cs:b"},
		{"SMOVE", "cs:a", "cs:b", "m"},
		{"SUNIONSTORE", "cs:d", "cs:a", "cs:b"},
		{"ZUNIONSTORE", "cs:d", "2", "cs:a", "cs:b"},
		{"EVAL", "return 1", "2", "cs:a", "cs:b"},
	} {
		want := node.do(cmd...)
		got := px.do(cmd...)
		if !bytes.Equal(got, want) || !bytes.HasPrefix(got, []byte("-CROSSSLOT")) {
			t.Errorf("%q: proxy %q, cluster node %q", cmd, got, want)
		}
	}
}

// TestPipelineOrder sends 10,000 mixed commands in one pipeline and wants every reply in place, equal to
// what a standalone Redis answers for the same pipeline.
func TestPipelineOrder(t *testing.T) {
	addr, standalone, _ := shared(t)
	run := func(a string) []string {
		c := newClient(a)
		defer c.Close()
		ctx := context.Background()
		pipe := c.Pipeline()
		var cmds []redis.Cmder
		for i := 0; i < 10000; i++ {
			k := fmt.Sprintf("po:%d", i%700)
			switch i % 10 {
			case 0:
				cmds = append(cmds, pipe.Set(ctx, k, i, 0))
			case 1:
				cmds = append(cmds, pipe.Get(ctx, k))
			case 2:
				cmds = append(cmds, pipe.Incr(ctx, fmt.Sprintf("po:n:%d", i%13)))
			case 3:
				cmds = append(cmds, pipe.MGet(ctx, k, fmt.Sprintf("po:%d", (i+1)%700), fmt.Sprintf("po:%d", (i+350)%700)))
			case 4:
				cmds = append(cmds, pipe.MSet(ctx, k, i, fmt.Sprintf("po:%d", (i+7)%700), -i))
			case 5:
				cmds = append(cmds, pipe.Ping(ctx))
			case 6:
				cmds = append(cmds, pipe.Del(ctx, fmt.Sprintf("po:%d", (i+3)%700), fmt.Sprintf("po:%d", (i+9)%700)))
			case 7:
				cmds = append(cmds, pipe.LPush(ctx, k, i)) // WRONGTYPE when k holds a string
			case 8:
				cmds = append(cmds, pipe.Echo(ctx, strconv.Itoa(i)))
			case 9:
				cmds = append(cmds, pipe.Exists(ctx, k, fmt.Sprintf("po:%d", (i+5)%700), k))
			}
		}
		_, _ = pipe.Exec(ctx)
		out := make([]string, len(cmds))
		for i, c := range cmds {
			out[i] = c.String()
		}
		c.Do(ctx, "DEL", "po:n:0").Err()
		return out
	}
	want := run(standalone.Addr)
	got := run(addr)
	if len(got) != len(want) {
		t.Fatalf("got %d replies, want %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		if got[i] != want[i] {
			if bad++; bad <= 10 {
				t.Errorf("reply %d: proxy %q, redis %q", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d replies differ", bad, len(want))
	}
}

// TestProtocolErrorsLikeRedis: each malformed request gets Redis's reply, then the connection closes; other
// clients go on.
func TestProtocolErrorsLikeRedis(t *testing.T) {
	addr, standalone, _ := shared(t)
	other := dialRaw(t, addr)
	for _, in := range []string{
		"*abc\r\n",
		"*1\r\n$-5\r\n",
		"*1\r\nx\r\n",
		"*1\r\n$4294967296\r\n",
		"*1\r\n$536870913\r\n",
		"*3000000000\r\n",
		"*1\r\n$abc\r\n",
		"set a \"b\r\n",
		"PING\r\n*1\r\n$4294967296\r\n",
	} {
		want := dialRaw(t, standalone.Addr)
		got := dialRaw(t, addr)
		want.send([]byte(in))
		got.send([]byte(in))
		for {
			w, g := want.reply(), got.reply()
			if !bytes.Equal(w, g) {
				t.Errorf("%q: proxy %q, redis %q", in, g, w)
			}
			if w == nil || g == nil {
				break
			}
		}
		if !got.closed() {
			t.Errorf("%q: proxy kept the connection open", in)
		}
		checkServes(t, other, fmt.Sprintf("protocol error %q", in))
	}
}

// TestInlineLikeRedis: inline requests, quoting included.
func TestInlineLikeRedis(t *testing.T) {
	addr, standalone, _ := shared(t)
	want := dialRaw(t, standalone.Addr)
	got := dialRaw(t, addr)
	for _, in := range []string{
		"PING\r\n",
		"set in:a \"b c\"\r\n",
		"get in:a\r\n",
		"set in:b 'x\\'y'\r\n",
		"get in:b\r\n",
		"echo \"\\x41\\n\"\n",
		"\r\n",
		"mget in:a in:b in:c\r\n",
	} {
		want.send([]byte(in))
		got.send([]byte(in))
		if in == "\r\n" {
			continue // no reply, as Redis
		}
		w, g := want.reply(), got.reply()
		if !bytes.Equal(w, g) {
			t.Errorf("%q: proxy %q, redis %q", in, g, w)
		}
	}
}

func TestKeylessCommands(t *testing.T) {
	addr, standalone, cluster := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	px := dialRaw(t, addr)

	hello := string(px.do("HELLO", "2", "SETNAME", "app1"))
	for _, want := range []string{"$5\r\nproto\r\n:2\r\n", "$4\r\nmode\r\n$10\r\nstandalone\r\n", "$7\r\nversion\r\n"} {
		if !strings.Contains(hello, want) {
			t.Errorf("HELLO 2 = %q, want it to contain %q", hello, want)
		}
	}
	if got := string(px.do("CLIENT", "GETNAME")); got != "$4\r\napp1\r\n" {
		t.Errorf("CLIENT GETNAME after HELLO SETNAME = %q", got)
	}
	for cmd, want := range map[string]string{
		"CLIENT SETNAME bad\nname":  "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
		"CLIENT SETINFO lib-name x": "+OK\r\n",
		"CLIENT SETINFO lib-ver 1":  "+OK\r\n",
		"MONITOR": "-ERR MONITOR is not supported by the proxy: a node would show its own commands, sent by " +
			"the proxy; run MONITOR on the nodes\r\n",
		"CONFIG SET maxmemory 1": "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - the proxy " +
			"sends a node parameter to every node only with config_set_broadcast: true in proxy.yaml\r\n",
		"DEBUG SLEEP 0": "-ERR 'DEBUG' is not supported by the proxy\r\n",
		"SHUTDOWN":      "-ERR 'SHUTDOWN' is not supported by the proxy\r\n",
		"CLUSTER SLOTS": "-ERR 'CLUSTER SLOTS' is not supported by the proxy\r\n",
		"CLUSTER INFO":  "-ERR 'CLUSTER INFO' is not supported by the proxy\r\n",
		"SELECT 1":      "-ERR SELECT is not allowed in cluster mode\r\n",
		// The facade's commands, without the facade.
		"CLUSTER NODES":             "-ERR 'CLUSTER NODES' is not supported by the proxy\r\n",
		"CLUSTER SHARDS":            "-ERR 'CLUSTER SHARDS' is not supported by the proxy\r\n",
		"CLUSTER MYID":              "-ERR 'CLUSTER MYID' is not supported by the proxy\r\n",
		"CLUSTER KEYSLOT k":         "-ERR 'CLUSTER KEYSLOT' is not supported by the proxy\r\n",
		"CLUSTER COUNTKEYSINSLOT 1": "-ERR 'CLUSTER COUNTKEYSINSLOT' is not supported by the proxy\r\n",
		"CLUSTER GETKEYSINSLOT 1 1": "-ERR 'CLUSTER GETKEYSINSLOT' is not supported by the proxy\r\n",
		"HELLO 4":                   "-NOPROTO unsupported protocol version\r\n",
		"MOVE k 1":                  "-ERR MOVE is not allowed in cluster mode\r\n",
	} {
		args := strings.Split(cmd, " ")
		if got := string(px.do(args...)); got != want {
			t.Errorf("%s = %q, want %q", cmd, got, want)
		}
	}
	info := string(px.do("CLIENT", "INFO"))
	if !strings.Contains(info, "lib-name=x lib-ver=1") || !strings.Contains(info, "name=app1") {
		t.Errorf("CLIENT INFO = %q", info)
	}
	id, err := c.ClientID(ctx).Result()
	if err != nil || id <= 0 {
		t.Errorf("CLIENT ID = %d, %v", id, err)
	}

	// COMMAND and CONFIG GET are the backend's own answers.
	n, err := c.Do(ctx, "COMMAND", "COUNT").Int64()
	want, _ := newClient(standalone.Addr).Do(ctx, "COMMAND", "COUNT").Int64()
	if err != nil || n != want {
		t.Errorf("COMMAND COUNT = %d, %v; want %d", n, err, want)
	}
	if cfg, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || cfg["appendonly"] != "no" {
		t.Errorf("CONFIG GET appendonly = %v, %v", cfg, err)
	}
	if tm, err := c.Time(ctx).Result(); err != nil || tm.IsZero() {
		t.Errorf("TIME = %v, %v", tm, err)
	}
	infoText, err := c.Info(ctx).Result()
	if err != nil || !strings.Contains(infoText, "# Server") || !strings.Contains(infoText, "# Proxy") ||
		strings.Contains(infoText, "cluster_enabled:1") {
		t.Errorf("INFO = %q, %v", infoText, err)
	}

	// DBSIZE is the sum over the masters.
	for i := 0; i < 50; i++ {
		c.Set(ctx, fmt.Sprintf("db:%d", i), i, 0)
	}
	var sum int64
	for _, m := range cluster.Masters() {
		n, err := m.Client(t).DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != sum {
		t.Errorf("DBSIZE = %d, %v; masters hold %d", n, err, sum)
	}

	// SCAN visits every master.
	seen := map[string]bool{}
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "db:*", 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(seen) != 50 {
		t.Errorf("SCAN found %d of 50 keys", len(seen))
	}
	if keys, err := c.Keys(ctx, "db:*").Result(); err != nil || len(keys) != 50 {
		t.Errorf("KEYS found %d of 50 keys, %v", len(keys), err)
	}

	if got := string(px.do("QUIT")); got != "+OK\r\n" || !px.closed() {
		t.Errorf("QUIT = %q, or the connection stayed open", got)
	}
}

// TestRedisBenchmarkNoErrors runs redis-benchmark's default test set through the proxy, unpipelined and with
// -P 16: every test reports a rate and no error appears.
func TestRedisBenchmarkNoErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	addr, _, _ := shared(t)
	host, port, _ := strings.Cut(addr, ":")
	for _, pipeline := range []string{"1", "16"} {
		out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-q", "-n", "2000", "-c", "20",
			"-P", pipeline).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-benchmark -P %s: %v\n%s", pipeline, err, out)
		}
		lines := 0
		for _, l := range strings.Split(string(out), "\n") {
			l = strings.TrimSpace(l[strings.LastIndex(l, "\r")+1:])
			if l == "" {
				continue
			}
			if strings.Contains(strings.ToLower(l), "err") || strings.Contains(l, "WARNING") {
				t.Errorf("-P %s: %s", pipeline, l)
			}
			if strings.Contains(l, "requests per second") {
				lines++
			}
		}
		if lines < 15 {
			t.Errorf("-P %s: only %d tests reported a rate:\n%s", pipeline, lines, out)
		}
	}
}

// TestLocalCommandArgsLikeRedis: every command the proxy answers itself checks its arguments as Redis does,
// beyond the table's arity (PING a b, CLIENT LIST filters, CLIENT NO-EVICT values, AUTH shapes).
func TestLocalCommandArgsLikeRedis(t *testing.T) {
	differential(t, split(`
		PING
		PING a
		PING a b
		ECHO
		ECHO a b
		SELECT
		SELECT 0 1
		SELECT x
		HELLO 2 foo
		HELLO 1
		HELLO 2 setname
		AUTH
		AUTH a b c
		RESET a
		CLIENT SETNAME
		CLIENT SETNAME a b
		CLIENT GETNAME x
		CLIENT ID x
		CLIENT INFO x
		CLIENT LIST foo
		CLIENT LIST type foo
		CLIENT LIST type pubsub
		CLIENT LIST type master
		CLIENT LIST id x
		CLIENT LIST id 0
		CLIENT LIST id -1
		CLIENT LIST id 0 x
		CLIENT LIST id 999999999
		CLIENT LIST id
		CLIENT NO-EVICT
		CLIENT NO-EVICT maybe
		CLIENT NO-EVICT on
		CLIENT NO-EVICT OFF
		READONLY x
		READWRITE x
		DBSIZE x
		FLUSHALL foo
		KEYS
		SCAN
		SCAN x
		SCAN 0 count 0
		SCAN 0 foo
		CONFIG GET
		QUIT a
	`))
}
