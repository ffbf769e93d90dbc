package proxy_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// slowEntryShape replaces an entry's id, time and duration with placeholders, and the client's port, so that
// entries of the proxy and of a standalone Redis compare.
var slowEntryShape = regexp.MustCompile(`\*6\r\n:\d+\r\n:\d+\r\n:\d+\r\n`)

// TestSlowlog: the proxy's SLOWLOG logs what is slow as its client sees it. With the threshold at 100 ms a
// GET held 300 ms by its master (CLIENT PAUSE) is logged and fast commands are not; at 0 every command is,
// its arguments trimmed exactly as a standalone Redis trims them (32 arguments, 128 bytes each), with the
// client's address and name; slowlog-max-len caps the entries; SLOWLOG RESET empties it; the arguments are
// checked as Redis checks them.
func TestSlowlog(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, standalone, _ := shared(t)
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.SlowlogSlowerThan = 100000 })
	rc := dialRaw(t, addr)
	for range 20 {
		rc.do("GET", "slow:fast")
	}
	snap := snapshotOf(srv)
	paused, key := snap.Nodes[snap.Shards[0].Master].Addr, keyInShard(snap, 0)
	mustDo(t, paused, "CLIENT", "PAUSE", "300", "ALL")
	began := time.Now()
	rc.do("GET", key)
	took := time.Since(began)
	if got := string(rc.do("SLOWLOG", "LEN")); got != ":1\r\n" {
		t.Fatalf("SLOWLOG LEN = %q after one slow GET among 20 fast ones", got)
	}
	entry := string(rc.do("SLOWLOG", "GET"))
	m := regexp.MustCompile(`^\*1\r\n\*6\r\n:0\r\n:(\d+)\r\n:(\d+)\r\n\*2\r\n\$3\r\nGET\r\n\$\d+\r\n` +
		regexp.QuoteMeta(key) + `\r\n\$\d+\r\n127\.0\.0\.1:\d+\r\n\$0\r\n\r\n$`).FindStringSubmatch(entry)
	if m == nil {
		t.Fatalf("SLOWLOG GET = %q", entry)
	}
	var at, usec int64
	fmt.Sscan(m[1], &at)
	fmt.Sscan(m[2], &usec)
	if usec < 250000 || time.Duration(usec)*time.Microsecond > took || time.Since(time.Unix(at, 0)) > 10*time.Second {
		t.Errorf("entry at %d took %d µs; the client waited %v", at, usec, took)
	}

	// Threshold 0: every command, trimmed as Redis trims; the same commands on a standalone Redis.
	long := strings.Repeat("x", 200)
	many := []string{"MSET"}
	for i := range 20 {
		many = append(many, fmt.Sprintf("{slow}%d", i), "v")
	}
	for _, a := range []string{addr, standalone.Addr} {
		c := dialRaw(t, a)
		c.do("CONFIG", "SET", "slowlog-log-slower-than", "0")
		c.do("SLOWLOG", "RESET")
		c.do("CLIENT", "SETNAME", "app1")
		c.do("SET", "slow:long", long)
		c.do(many...)
	}
	get := func(a string) string {
		c := dialRaw(t, a)
		got := string(c.do("SLOWLOG", "GET", "3"))
		return regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllString(slowEntryShape.ReplaceAllString(got, "*6\r\n:ID\r\n:T\r\n:D\r\n"), "ADDR")
	}
	if p, r := get(addr), get(standalone.Addr); p != r {
		t.Errorf("SLOWLOG GET 3 differs from a standalone Redis's:\nproxy %q\nredis %q", p, r)
	}
	// A command split over the nodes is one entry: its name, then its arguments, counted in all.
	del := []string{"DEL"}
	for i := range 100 {
		del = append(del, fmt.Sprintf("slow:del:%d", i))
	}
	rc.do(del...)
	if got := string(rc.do("SLOWLOG", "GET", "2")); !strings.Contains(got, "*32\r\n$3\r\nDEL\r\n") ||
		!strings.Contains(got, "$23\r\n... (70 more arguments)\r\n") {
		t.Errorf("the entry of a DEL of 100 keys in many slots: %q", got)
	}
	rc.do("CONFIG", "SET", "slowlog-max-len", "2")
	for range 5 {
		rc.do("PING")
	}
	if got := string(rc.do("SLOWLOG", "LEN")); got != ":2\r\n" {
		t.Errorf("SLOWLOG LEN = %q with slowlog-max-len 2", got)
	}
	for args, want := range map[string]string{
		"SLOWLOG GET abc": "-ERR count should be greater than or equal to -1\r\n",
		"SLOWLOG GET -2":  "-ERR count should be greater than or equal to -1\r\n",
		"SLOWLOG LEN x":   "-ERR wrong number of arguments for 'slowlog|len' command\r\n",
	} {
		if got := string(rc.do(strings.Fields(args)...)); got != want {
			t.Errorf("%s = %q, want %q", args, got, want)
		}
	}
	// RESET empties it, and is then logged itself, as in Redis.
	if got := string(rc.do("SLOWLOG", "RESET")); got != "+OK\r\n" {
		t.Errorf("SLOWLOG RESET = %q", got)
	}
	if got := string(rc.do("SLOWLOG", "GET", "-1")); !regexp.MustCompile(`^\*1\r\n\*6\r\n:\d+\r\n:\d+\r\n:\d+\r\n\*2\r\n\$7\r\nSLOWLOG\r\n\$5\r\nRESET\r\n`).MatchString(got) {
		t.Errorf("SLOWLOG GET -1 after RESET = %q, want RESET's own entry only", got)
	}
	dialRaw(t, standalone.Addr).do("CONFIG", "SET", "slowlog-log-slower-than", "10000")
}
