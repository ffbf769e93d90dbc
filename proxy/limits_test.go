package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestHugeBulkHeader: a 4 GiB bulk length is refused with Redis's error and the connection closes; a legal
// 512 MiB header followed by a trickle of bytes allocates nothing near its size. Other clients go on.
func TestHugeBulkHeader(t *testing.T) {
	addr, _, _ := shared(t)
	other := dialRaw(t, addr)

	c := dialRaw(t, addr)
	c.send([]byte("*2\r\n$3\r\nGET\r\n$4294967296\r\n"))
	if got := string(c.reply()); got != "-ERR Protocol error: invalid bulk length\r\n" {
		t.Errorf("4 GiB bulk: reply %q", got)
	}
	if !c.closed() {
		t.Error("4 GiB bulk: connection left open")
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := dialRaw(t, addr)
	big.send([]byte("*3\r\n$3\r\nSET\r\n$6\r\nhb:big\r\n$536870912\r\n"))
	for i := 0; i < 100; i++ {
		big.send([]byte(strings.Repeat("x", 1024)))
	}
	time.Sleep(200 * time.Millisecond)
	checkServes(t, other, "a 512 MiB value arriving")
	runtime.ReadMemStats(&after)
	if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 32<<20 {
		t.Errorf("a 512 MiB bulk header with 100 KiB sent made the proxy allocate %d MiB", grown>>20)
	}
	big.c.Close()
}

// TestAllTypesWithGoRedis drives every data type through go-redis's plain client.
func TestAllTypesWithGoRedis(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	check := func(what string, err error, ok bool) {
		t.Helper()
		if err != nil || !ok {
			t.Errorf("%s: err %v", what, err)
		}
	}
	v, err := c.Set(ctx, "gt:s", "v", time.Minute).Result()
	check("SET", err, v == "OK")
	n, err := c.IncrBy(ctx, "gt:n", 5).Result()
	check("INCRBY", err, n == 5)
	n, err = c.RPush(ctx, "gt:l", "a", "b", "c").Result()
	check("RPUSH", err, n == 3)
	l, err := c.LRange(ctx, "gt:l", 0, -1).Result()
	check("LRANGE", err, strings.Join(l, "") == "abc")
	n, err = c.HSet(ctx, "gt:h", "f", "1", "g", "2").Result()
	check("HSET", err, n == 2)
	h, err := c.HGetAll(ctx, "gt:h").Result()
	check("HGETALL", err, h["f"] == "1" && h["g"] == "2")
	n, err = c.SAdd(ctx, "gt:set", "x", "y").Result()
	check("SADD", err, n == 2)
	ok, err := c.SIsMember(ctx, "gt:set", "y").Result()
	check("SISMEMBER", err, ok)
	n, err = c.ZAdd(ctx, "gt:z", redisZ(1, "a"), redisZ(2, "b")).Result()
	check("ZADD", err, n == 2)
	z, err := c.ZRangeWithScores(ctx, "gt:z", 0, -1).Result()
	check("ZRANGE", err, len(z) == 2 && z[1].Member == "b" && z[1].Score == 2)
	id, err := c.XAdd(ctx, xargs("gt:x")).Result()
	check("XADD", err, id != "")
	xs, err := c.XRange(ctx, "gt:x", "-", "+").Result()
	check("XRANGE", err, len(xs) == 1 && xs[0].Values["f"] == "v")
	n, err = c.PFAdd(ctx, "gt:hll", "a", "b", "a").Result()
	check("PFADD", err, n == 1)
	n, err = c.PFCount(ctx, "gt:hll").Result()
	check("PFCOUNT", err, n == 2)
	n, err = c.GeoAdd(ctx, "gt:g", geo("p", 13.36, 38.11)).Result()
	check("GEOADD", err, n == 1)
	pos, err := c.GeoPos(ctx, "gt:g", "p").Result()
	check("GEOPOS", err, len(pos) == 1 && pos[0] != nil)
	n, err = c.SetBit(ctx, "gt:b", 3, 1).Result()
	check("SETBIT", err, n == 0)
	n, err = c.BitCount(ctx, "gt:b", nil).Result()
	check("BITCOUNT", err, n == 1)
	vals, err := c.MGet(ctx, "gt:s", "gt:n", "gt:none").Result()
	check("MGET", err, len(vals) == 3 && vals[0] == "v" && vals[1] == "5" && vals[2] == nil)
	n, err = c.Del(ctx, "gt:s", "gt:n", "gt:l", "gt:h", "gt:set", "gt:z", "gt:x", "gt:hll", "gt:g", "gt:b").Result()
	check("DEL", err, n == 10)
}

func redisZ(score float64, m string) redis.Z { return redis.Z{Score: score, Member: m} }

func xargs(stream string) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: stream, Values: map[string]any{"f": "v"}}
}

func geo(name string, lon, lat float64) *redis.GeoLocation {
	return &redis.GeoLocation{Name: name, Longitude: lon, Latitude: lat}
}

// TestDisconnectWithRequestsInFlight: a client that leaves mid-pipeline disturbs nobody. The proxy has one
// event loop, so the aborted clients' requests and the other client's share every backend connection.
func TestDisconnectWithRequestsInFlight(t *testing.T) {
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs(), func(c *proxy.Config) { c.EventLoops = 1 })
	other := dialRaw(t, addr)
	var keys []string // one per master
	for _, r := range [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}} {
		k := keyInRange("dc:", r[0], r[1])
		keys = append(keys, k)
		if got := string(other.do("SET", k, "v-"+k)); got != "+OK\r\n" {
			t.Fatalf("SET %s = %q", k, got)
		}
	}
	one := resp.AppendCommandStrings(nil, "MGET", keys[0], keys[1], keys[2])
	for _, k := range keys {
		one = resp.AppendCommandStrings(one, "GET", k)
	}
	for round := 0; round < 20; round++ {
		c := dialRaw(t, addr)
		c.send(bytes.Repeat(one, 1000))
		c.c.Close()
	}
	// Their replies still in flight on the shared connections must be matched and dropped, not given to
	// anyone else: every answer here is the right one.
	for i := 0; i < 20; i++ {
		checkServes(t, other, fmt.Sprint("disconnects ", i))
		for _, k := range keys {
			if got, want := string(other.do("GET", k)), string(resp.AppendBulkString(nil, "v-"+k)); got != want {
				t.Fatalf("GET %s = %q, want %q", k, got, want)
			}
		}
	}
}

// TestNoSeedAnswers: with no reachable seed the proxy still serves local commands, and keyed commands get
// CLUSTERDOWN at once instead of hanging.
func TestNoSeedAnswers(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	addr, _ := startProxyOpt(t, []string{dead}, true)
	c := dialRaw(t, addr)
	if got := string(c.do("PING")); got != "+PONG\r\n" {
		t.Errorf("PING = %q", got)
	}
	start := time.Now()
	if got := string(c.do("GET", "k")); got != "-CLUSTERDOWN The cluster is down\r\n" {
		t.Errorf("GET = %q", got)
	}
	if got := string(c.do("MGET", "a", "b", "c")); got != "-CLUSTERDOWN The cluster is down\r\n" {
		t.Errorf("MGET = %q", got)
	}
	if got := string(c.do("DBSIZE")); got != "-CLUSTERDOWN The cluster is down\r\n" {
		t.Errorf("DBSIZE = %q", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("answers took %v", d)
	}
}

// TestQueryBufferLimit: client_query_buffer_limit closes a client whose one request passes it, without a
// reply, as Redis's client-query-buffer-limit does (compared with a standalone server set to the same 1mb);
// a request below it is served, and other clients go on.
func TestQueryBufferLimit(t *testing.T) {
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs(), func(c *proxy.Config) { c.QueryLimit = 1 << 20 })
	standalone := redistest.StartServer(t, "--client-query-buffer-limit", "1mb")
	other := dialRaw(t, addr)
	for _, size := range []int{512 << 10, 3 << 20, 16 << 20} {
		req := resp.AppendCommandStrings(nil, "SET", "qbl:k", strings.Repeat("v", size))
		var replies [2][]byte
		var closed [2]bool
		for i, a := range []string{standalone.Addr, addr} {
			replies[i], closed[i] = sendOnce(t, a, req)
		}
		if !bytes.Equal(replies[0], replies[1]) || closed[0] != closed[1] {
			t.Errorf("SET of %d bytes: proxy %q (closed %v), redis %q (closed %v)", size, replies[1], closed[1],
				replies[0], closed[0])
		}
		if want := size > 1<<20; closed[1] != want {
			t.Errorf("SET of %d bytes over a 1mb limit: closed %v", size, closed[1])
		}
		checkServes(t, other, fmt.Sprint("a request of ", size, " bytes"))
	}
}

// sendOnce sends req on a new connection and reads until the server closes it or 2 s pass: the bytes it
// answered, and whether it closed (EOF or reset: a server that closes with unread input resets). It stops at
// the first one-line reply.
func sendOnce(t *testing.T, addr string, req []byte) ([]byte, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write(req) // the server may close before it takes all of it
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if bytes.HasSuffix(got, []byte("\r\n")) {
			return got, false // a one-line reply: the server goes on
		}
		if err != nil {
			var ne net.Error
			return got, !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}
