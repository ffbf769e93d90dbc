package proxy_test

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// configPairs reads a CONFIG GET reply: its names in order, and name → value. It fails the test unless the
// reply is a flat array of name, value bulks (RESP2's shape).
func configPairs(t *testing.T, reply []byte) (names []string, values map[string]string) {
	t.Helper()
	elems, ok := resp.ArrayElems(reply, nil)
	if !ok || len(elems)%2 != 0 {
		t.Fatalf("CONFIG GET reply %.200q is not an array of name, value pairs", reply)
	}
	values = map[string]string{}
	for i := 0; i < len(elems); i += 2 {
		name, null1, ok1 := resp.BulkValue(elems[i])
		value, null2, ok2 := resp.BulkValue(elems[i+1])
		if !ok1 || !ok2 || null1 || null2 {
			t.Fatalf("CONFIG GET reply: pair %q %q is not two bulk strings", elems[i], elems[i+1])
		}
		names = append(names, string(name))
		values[string(name)] = string(value)
	}
	return names, values
}

// nodeConfig is one parameter as a node itself answers it.
func nodeConfig(t *testing.T, s *redistest.Server, name string) string {
	t.Helper()
	v, err := s.Do("CONFIG", "GET", name)
	pair, _ := v.([]any)
	if err != nil || len(pair) != 2 {
		t.Fatalf("%s CONFIG GET %s = %v, %v", s.Addr, name, v, err)
	}
	return pair[1].(string)
}

// TestConfigGetLikeStandalone: CONFIG GET through the proxy has a standalone Redis's reply shape for one
// parameter, several, glob patterns and none (byte for byte where Redis's order is not in play: its dict
// order is random per process), each parameter once, and the proxy's own values for the parameters the proxy
// owns; the rest are the nodes' values, which are a standalone server's.
func TestConfigGetLikeStandalone(t *testing.T) {
	_, standalone, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs(), func(c *proxy.Config) {
		c.MaxClients = 1234
		c.IdleTimeout = proxy.Duration(7 * time.Second)
		c.TCPKeepalive = proxy.Duration(1500 * time.Millisecond) // whole seconds, rounded up: 2
		c.QueryLimit = 2 << 20
		c.OutputLimit = proxy.OutputLimit{Hard: 3 << 20, Soft: 1 << 20, SoftSeconds: proxy.Duration(30 * time.Second)}
	})
	px, alone := dialRaw(t, addr), dialRaw(t, standalone.Addr)
	_, port, _ := net.SplitHostPort(addr)

	for _, cmd := range []string{
		"CONFIG GET appendonly", "CONFIG GET APPENDONLY", "CONFIG GET appendonly AppendOnly", "CONFIG GET hz",
		"CONFIG GET appendon?y", "CONFIG GET nosuch", "CONFIG GET nosuch*", "CONFIG GET [",
		"CONFIG GET slaveof", "CONFIG GET", "CONFIG GET maxmemory-polic[y]",
	} {
		args := strings.Fields(cmd)
		if got, want := string(px.do(args...)), string(alone.do(args...)); got != want {
			t.Errorf("%s = %q, standalone %q", cmd, got, want)
		}
	}

	owned := map[string]string{
		"maxclients": "1234", "timeout": "7", "tcp-keepalive": "2", "client-query-buffer-limit": "2097152",
		"port": port, "bind": "127.0.0.1", "databases": "1", "cluster-enabled": "no",
	}
	for name, want := range owned {
		if got, wantReply := string(px.do("CONFIG", "GET", name)),
			string(resp.AppendBulkString(resp.AppendBulkString(resp.AppendArrayHeader(nil, 2), name), want)); got != wantReply {
			t.Errorf("CONFIG GET %s = %q, want the proxy's %q", name, got, wantReply)
		}
	}
	_, aloneObl := configPairs(t, alone.do("CONFIG", "GET", "client-output-buffer-limit"))
	_, obl := configPairs(t, px.do("CONFIG", "GET", "client-output-buffer-limit"))
	wantObl := "normal 3145728 1048576 30" + strings.TrimPrefix(aloneObl["client-output-buffer-limit"], "normal 0 0 0")
	if obl["client-output-buffer-limit"] != wantObl {
		t.Errorf("client-output-buffer-limit = %q, want the proxy's normal class and the nodes' others: %q",
			obl["client-output-buffer-limit"], wantObl)
	}

	// Several patterns and globs: the standalone server's names, each once, with its values but for the
	// proxy's parameters and the ones that are per process (ports, files, cluster settings).
	perProcess := regexp.MustCompile(
		`^(cluster-.*|port|dir|logfile|pidfile|unixsocket|repl-.*|client-output-buffer-limit)$`)
	for _, cmd := range []string{
		"CONFIG GET *", "CONFIG GET *max* timeout", "CONFIG GET maxclients port bind hz appendonly",
		"CONFIG GET TIMEOUT Timeout timeout tim*", "CONFIG GET *list* *set* *max*", "CONFIG GET append*",
	} {
		args := strings.Fields(cmd)
		names, got := configPairs(t, px.do(args...))
		aloneNames, want := configPairs(t, alone.do(args...))
		slices.Sort(aloneNames)
		sorted := slices.Sorted(slices.Values(names))
		if !slices.Equal(sorted, aloneNames) {
			t.Errorf("%s: names %q, standalone %q", cmd, sorted, aloneNames)
			continue
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[strings.ToLower(n)] {
				t.Errorf("%s: %q twice", cmd, n)
			}
			seen[strings.ToLower(n)] = true
			w, isOwned := owned[strings.ToLower(n)]
			switch {
			case isOwned:
				if got[n] != w {
					t.Errorf("%s: %s = %q, want the proxy's %q", cmd, n, got[n], w)
				}
			case perProcess.MatchString(n):
			case got[n] != want[n]:
				t.Errorf("%s: %s = %q, standalone %q", cmd, n, got[n], want[n])
			}
		}
		if cmd == "CONFIG GET *" && len(names) < 150 {
			t.Errorf("CONFIG GET * lists %d parameters", len(names))
		}
	}
}

// TestConfigSetErrorsLikeStandalone: a CONFIG SET the proxy refuses answers a standalone Redis's error, byte
// for byte, for bad values of the proxy's parameters, duplicates, odd arguments and immutable parameters;
// with config_set_broadcast on, the nodes' own errors for theirs. The proxy's own refusals name what to do.
// Nothing changes after any of them.
func TestConfigSetErrorsLikeStandalone(t *testing.T) {
	_, standalone, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs(), func(c *proxy.Config) { c.MaxClients = 1234 })
	broadcast := startProxy(t, cluster.Addrs(), func(c *proxy.Config) { c.ConfigSetBroadcast = true })
	px, pb, alone := dialRaw(t, addr), dialRaw(t, broadcast), dialRaw(t, standalone.Addr)
	before := string(px.do("CONFIG", "GET", "*"))

	same := [][]string{
		{"CONFIG", "SET", "timeout", "abc"},
		{"CONFIG", "SET", "timeout", "-1"},
		{"CONFIG", "SET", "timeout", "2147483648"},
		{"CONFIG", "SET", "timeout", "01"},
		{"CONFIG", "SET", "timeout", " 1"},
		{"CONFIG", "SET", "TIMEOUT", "abc"},
		{"CONFIG", "SET", "timeout", ""},
		{"CONFIG", "SET", "maxclients", "-1"},
		{"CONFIG", "SET", "maxclients", "0"},
		{"CONFIG", "SET", "maxclients", "4294967296"},
		{"CONFIG", "SET", "maxclients", "1.5"},
		{"CONFIG", "SET", "tcp-keepalive", "x"},
		{"CONFIG", "SET", "tcp-keepalive", "-5"},
		{"CONFIG", "SET", "timeout", "1", "timeout", "2"},
		{"CONFIG", "SET", "timeout", "1", "TIMEOUT", "2"},
		{"CONFIG", "SET", "maxclients", "5", "timeout", "x"},
		{"CONFIG", "SET", "timeout", "1", "maxclients"},
		{"CONFIG", "SET", "timeout"},
		{"CONFIG", "SET", "databases", "3"},
		{"CONFIG", "SET", "DataBases", "3"},
		{"CONFIG", "SET", "cluster-enabled", "yes"},
		{"CONFIG", "SET", "timeout", "5", "databases", "3"},
		{"CONFIG", "SET", "client-output-buffer-limit", "normal 1 2"},
		{"CONFIG", "SET", "client-output-buffer-limit", "master 1 2 3"},
		{"CONFIG", "SET", "client-output-buffer-limit", "pubsub x 1 1"},
		{"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 -1"},
		{"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 1 normal 1mb 1 z"},
		{"CONFIG", "RESETSTAT", "x"},
		{"CONFIG", "REWRITE", "x"},
		{"CONFIG", "NOSUCH"},
	}
	for _, args := range same {
		want := string(alone.do(args...))
		if !strings.HasPrefix(want, "-") {
			t.Fatalf("%q on the standalone server = %q, not an error: the test would change it", args, want)
		}
		for _, c := range []*rawConn{px, pb} {
			if got := string(c.do(args...)); got != want {
				t.Errorf("%q = %q, standalone %q", args, got, want)
			}
		}
	}
	// With broadcast on, node parameters are the nodes' to refuse.
	for _, args := range [][]string{
		{"CONFIG", "SET", "nosuch", "1"},
		{"CONFIG", "SET", "maxmemory", "lots"},
		{"CONFIG", "SET", "maxclients", "5", "nosuch", "1"},
		{"CONFIG", "SET", "maxclients", "5", "maxmemory-policy", "never"},
		{"CONFIG", "SET", "save", "1 1 1"},
		{"CONFIG", "SET", "zset-max-listpack-entries", "1", "ZSET-MAX-LISTPACK-ENTRIES", "2"},
		{"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 1", "client-output-buffer-limit", "pubsub 1 1 1"},
	} {
		want := string(alone.do(args...))
		if !strings.HasPrefix(want, "-") {
			t.Fatalf("%q on the standalone server = %q, not an error: the test would change it", args, want)
		}
		if got := string(pb.do(args...)); got != want {
			t.Errorf("broadcast on: %q = %q, standalone %q", args, got, want)
		}
	}

	failed := func(arg, why string) string {
		return "-ERR CONFIG SET failed (possibly related to argument '" + arg + "') - " + why + "\r\n"
	}
	offText := "the proxy sends a node parameter to every node only with config_set_broadcast: true in proxy.yaml"
	listen := "the proxy listens where listen in proxy.yaml says"
	for _, tc := range []struct {
		c    *rawConn
		args []string
		want string
	}{
		{px, []string{"CONFIG", "SET", "maxmemory", "1mb"}, failed("maxmemory", offText)},
		{px, []string{"CONFIG", "SET", "nosuch", "1"}, failed("nosuch", offText)},
		{px, []string{"CONFIG", "SET", "timeout", "5", "MaxMemory", "1mb"}, failed("MaxMemory", offText)},
		{px, []string{"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 1"},
			failed("client-output-buffer-limit", offText)},
		{px, []string{"CONFIG", "RESETSTAT"}, "-ERR CONFIG RESETSTAT resets every node's statistics: the proxy " +
			"sends it to the nodes only with config_set_broadcast: true in proxy.yaml\r\n"},
		{pb, []string{"CONFIG", "SET", "port", "6379"}, failed("port", listen)},
		{pb, []string{"CONFIG", "SET", "bind", "0.0.0.0"}, failed("bind", listen)},
		{pb, []string{"CONFIG", "SET", "client-query-buffer-limit", "2mb"},
			failed("client-query-buffer-limit", "the proxy's limit is client_query_buffer_limit in proxy.yaml")},
		{pb, []string{"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 1 normal 0 0 0"},
			failed("client-output-buffer-limit", "its normal class is the proxy's own: set "+
				"client_output_buffer_limit in proxy.yaml")},
		{pb, []string{"CONFIG", "SET", "dir", "/tmp"},
			failed("dir", "a parameter of one node: set it on each node, the proxy does not send it to all")},
		{pb, []string{"CONFIG", "SET", "zset-max-listpack-entries", "1", "cluster-announce-ip", "10.0.0.1"},
			failed("cluster-announce-ip", "a parameter of one node: set it on each node, the proxy does not send it to all")},
		{px, []string{"CONFIG", "REWRITE"}, "-ERR CONFIG REWRITE is not supported by the proxy: its own " +
			"parameters are set in proxy.yaml, and each node rewrites its own configuration file\r\n"},
	} {
		if got := string(tc.c.do(tc.args...)); got != tc.want {
			t.Errorf("%q = %q, want %q", tc.args, got, tc.want)
		}
	}
	if after := string(px.do("CONFIG", "GET", "*")); after != before {
		_, b := configPairs(t, []byte(before))
		_, a := configPairs(t, []byte(after))
		for n := range a {
			if a[n] != b[n] {
				t.Errorf("after refused CONFIG SETs, %s is %q, was %q", n, a[n], b[n])
			}
		}
	}
	for _, n := range cluster.Nodes {
		if v := nodeConfig(t, n, "zset-max-listpack-entries"); v != "128" {
			t.Errorf("node %s has zset-max-listpack-entries %s after refused CONFIG SETs", n.Addr, v)
		}
	}
}

// TestConfigSetTimeout: CONFIG SET timeout through the proxy changes the running proxy: an idle client is
// closed about a second after SET timeout 1, and not after SET timeout 0.
func TestConfigSetTimeout(t *testing.T) {
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs())
	admin := dialRaw(t, addr)
	idle := dialRaw(t, addr)
	if got := string(idle.do("PING")); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	if got := string(admin.do("CONFIG", "SET", "timeout", "1")); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET timeout 1 = %q", got)
	}
	set := time.Now()
	if got := string(admin.do("CONFIG", "GET", "timeout")); got != "*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n" {
		t.Errorf("CONFIG GET timeout after SET = %q", got)
	}
	_ = idle.c.SetReadDeadline(time.Now().Add(6 * time.Second))
	if _, err := idle.r.ReadByte(); err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("idle client after CONFIG SET timeout 1: read %v, want EOF", err)
	}
	if d := time.Since(set); d < 900*time.Millisecond || d > 4*time.Second {
		t.Errorf("idle client closed %v after CONFIG SET timeout 1, want about 1 s", d)
	}

	admin = dialRaw(t, addr)
	if got := string(admin.do("CONFIG", "SET", "timeout", "0")); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET timeout 0 = %q", got)
	}
	idle = dialRaw(t, addr)
	time.Sleep(2500 * time.Millisecond)
	if got := string(idle.do("PING")); got != "+PONG\r\n" {
		t.Errorf("client idle 2.5 s after CONFIG SET timeout 0: PING = %q", got)
	}
}

// TestConfigSetMaxclients: CONFIG SET maxclients through the proxy changes the running proxy: the client
// after the limit is refused with Redis's error, and a higher limit lets it in again.
func TestConfigSetMaxclients(t *testing.T) {
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs())
	admin := dialRaw(t, addr)
	if got := string(admin.do("CONFIG", "SET", "maxclients", "3")); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET maxclients 3 = %q", got)
	}
	if got := string(admin.do("CONFIG", "GET", "maxclients")); got != "*2\r\n$10\r\nmaxclients\r\n$1\r\n3\r\n" {
		t.Errorf("CONFIG GET maxclients after SET = %q", got)
	}
	for i := 0; i < 2; i++ {
		if got := string(dialRaw(t, addr).do("PING")); got != "+PONG\r\n" {
			t.Fatalf("client %d of 3: PING = %q", i+2, got)
		}
	}
	// The two clients above stay open until the test ends; a fourth is one too many.
	over := dialRaw(t, addr)
	if got := string(over.reply()); got != "-ERR max number of clients reached\r\n" {
		t.Errorf("fourth client with maxclients 3 got %q", got)
	}
	if !over.closed() {
		t.Error("the fourth client was not closed")
	}
	if got := string(admin.do("CONFIG", "SET", "maxclients", "10")); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET maxclients 10 = %q", got)
	}
	// The refused client's close may still be counted in: retry briefly.
	redistest.WaitFor(t, 5*time.Second, "a client under the raised limit", func() error {
		c := dialRaw(t, addr)
		if got := string(c.do("PING")); got != "+PONG\r\n" {
			return fmt.Errorf("PING = %q", got)
		}
		return nil
	})
}

// TestConfigSetTCPKeepalive: CONFIG SET tcp-keepalive through the proxy applies to the connections accepted
// after it, as in Redis: their keepalive timer (ss -o on the proxy's side) runs from the new value.
func TestConfigSetTCPKeepalive(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("no ss to read the socket's keepalive timer")
	}
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs())
	_, port, _ := net.SplitHostPort(addr)
	admin := dialRaw(t, addr)
	// keepalive is the timer of the proxy's side of c, in seconds.
	keepalive := func(c *rawConn) int {
		t.Helper()
		_, cport, _ := net.SplitHostPort(c.c.LocalAddr().String())
		out, err := exec.Command("ss", "-tnoH", "state", "established", "( sport = :"+port+" and dport = :"+
			cport+" )").CombinedOutput()
		m := regexp.MustCompile(`timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:\.\d+)?sec)?`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Fatalf("ss: %v: %s", err, out)
		}
		mins, _ := strconv.Atoi(string(m[1]))
		secs, _ := strconv.Atoi(string(m[2]))
		return mins*60 + secs
	}
	if got := keepalive(admin); got < 240 || got > 300 {
		t.Fatalf("keepalive timer %d s with the default tcp_keepalive 300s", got)
	}
	if got := string(admin.do("CONFIG", "SET", "tcp-keepalive", "77")); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET tcp-keepalive 77 = %q", got)
	}
	if got := string(admin.do("CONFIG", "GET", "tcp-keepalive")); got != "*2\r\n$13\r\ntcp-keepalive\r\n$2\r\n77\r\n" {
		t.Errorf("CONFIG GET tcp-keepalive after SET = %q", got)
	}
	c := dialRaw(t, addr)
	if got := string(c.do("PING")); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	if got := keepalive(c); got < 60 || got > 77 {
		t.Errorf("keepalive timer %d s on a connection accepted after CONFIG SET tcp-keepalive 77", got)
	}
}

// TestConfigSetBroadcast: with config_set_broadcast off, CONFIG SET of a node parameter and CONFIG RESETSTAT
// are refused and no node changes; with it on they reach every node, replicas too, all or nothing with the
// proxy's own parameters in the same command, which never reach the nodes. Where masters disagree, CONFIG
// GET answers the value of the master of the lowest slots.
func TestConfigSetBroadcast(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 2, Replicas: 1})
	_, standalone, _ := shared(t)
	off := dialRaw(t, startProxy(t, cl.Addrs()))
	on := dialRaw(t, startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.ConfigSetBroadcast = true }))
	if n := len(cl.Replicas()); n != 2 {
		t.Fatalf("%d replicas, want 2", n)
	}
	everyNode := func(name, want, after string) {
		t.Helper()
		for _, n := range cl.Nodes {
			if got := nodeConfig(t, n, name); got != want {
				t.Errorf("after %s: node %s has %s %q, want %q", after, n.Addr, name, got, want)
			}
		}
	}
	do := func(c *rawConn, want string, args ...string) {
		t.Helper()
		if got := string(c.do(args...)); got != want {
			t.Errorf("%q = %q, want %q", args, got, want)
		}
	}

	do(off, "-ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-entries') - the proxy sends a node "+
		"parameter to every node only with config_set_broadcast: true in proxy.yaml\r\n",
		"CONFIG", "SET", "zset-max-listpack-entries", "99")
	do(off, "-ERR CONFIG SET failed (possibly related to argument 'zset-max-listpack-entries') - the proxy sends a node "+
		"parameter to every node only with config_set_broadcast: true in proxy.yaml\r\n",
		"CONFIG", "SET", "maxclients", "50", "zset-max-listpack-entries", "99")
	everyNode("zset-max-listpack-entries", "128", "CONFIG SET with broadcast off")
	do(off, "*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n", "CONFIG", "GET", "maxclients")

	do(on, "+OK\r\n", "CONFIG", "SET", "zset-max-listpack-entries", "99")
	everyNode("zset-max-listpack-entries", "99", "CONFIG SET zset-max-listpack-entries 99")
	do(on, "*2\r\n$25\r\nzset-max-listpack-entries\r\n$2\r\n99\r\n", "CONFIG", "GET", "zset-max-listpack-entries")

	// Mixed: the proxy's parameter changes the proxy only, the node's every node.
	do(on, "+OK\r\n", "CONFIG", "SET", "maxclients", "50", "zset-max-listpack-entries", "77")
	everyNode("zset-max-listpack-entries", "77", "CONFIG SET maxclients 50 zset-max-listpack-entries 77")
	everyNode("maxclients", "10000", "CONFIG SET maxclients 50 zset-max-listpack-entries 77")
	do(on, "*2\r\n$10\r\nmaxclients\r\n$2\r\n50\r\n", "CONFIG", "GET", "maxclients")

	// All or nothing: a bad node value leaves the proxy's parameter alone, a bad proxy value the nodes'.
	want := string(dialRaw(t, standalone.Addr).do("CONFIG", "SET", "zset-max-listpack-entries", "abc"))
	do(on, want, "CONFIG", "SET", "maxclients", "60", "zset-max-listpack-entries", "abc")
	do(on, "*2\r\n$10\r\nmaxclients\r\n$2\r\n50\r\n", "CONFIG", "GET", "maxclients")
	do(on, "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 "+
		"and 4294967295 inclusive\r\n", "CONFIG", "SET", "zset-max-listpack-entries", "5", "maxclients", "0")
	everyNode("zset-max-listpack-entries", "77", "refused CONFIG SETs")

	// One node refuses (its ACL) while the others take it: the error says how many did and who did not, and
	// the proxy's parameter is not changed.
	rep := cl.Replicas()[0]
	if _, err := rep.Do("ACL", "SETUSER", "default", "-config|set"); err != nil {
		t.Fatal(err)
	}
	got := string(on.do("CONFIG", "SET", "maxclients", "70", "zset-max-listpack-entries", "33"))
	want = "-ERR CONFIG SET took effect on 3 of 4 nodes; " + rep.Addr + " answered: NOPERM "
	if !strings.HasPrefix(got, want) {
		t.Errorf("CONFIG SET that one node refused = %q, want %q...", got, want)
	}
	do(on, "*2\r\n$10\r\nmaxclients\r\n$2\r\n50\r\n", "CONFIG", "GET", "maxclients")
	for _, n := range cl.Nodes {
		if want := map[bool]string{true: "77", false: "33"}[n == rep]; nodeConfig(t, n, "zset-max-listpack-entries") != want {
			t.Errorf("node %s has zset-max-listpack-entries %s, want %s", n.Addr, nodeConfig(t, n, "zset-max-listpack-entries"), want)
		}
	}
	if _, err := rep.Do("ACL", "SETUSER", "default", "+config|set"); err != nil {
		t.Fatal(err)
	}
	do(on, "+OK\r\n", "CONFIG", "SET", "zset-max-listpack-entries", "77")

	// RESETSTAT: refused with broadcast off, every node's statistics reset with it on.
	echoes := func(n *redistest.Server) bool {
		info, err := n.DoString("INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(info, "cmdstat_echo:")
	}
	for _, n := range cl.Nodes {
		if _, err := n.Do("ECHO", "x"); err != nil || !echoes(n) {
			t.Fatalf("ECHO on %s: %v, or not in its commandstats", n.Addr, err)
		}
	}
	if got := string(off.do("CONFIG", "RESETSTAT")); !strings.HasPrefix(got, "-ERR CONFIG RESETSTAT") {
		t.Errorf("CONFIG RESETSTAT with broadcast off = %q", got)
	}
	for _, n := range cl.Nodes {
		if !echoes(n) {
			t.Errorf("node %s's statistics were reset by a refused CONFIG RESETSTAT", n.Addr)
		}
	}
	do(on, "+OK\r\n", "CONFIG", "RESETSTAT")
	for _, n := range cl.Nodes {
		if echoes(n) {
			t.Errorf("node %s's commandstats still count ECHO after CONFIG RESETSTAT", n.Addr)
		}
	}

	// Masters that disagree: the first master's value (the shard of the lowest slots).
	masters := cl.Masters()
	if _, err := masters[1].Do("CONFIG", "SET", "zset-max-listpack-entries", "55"); err != nil {
		t.Fatal(err)
	}
	do(on, "*2\r\n$25\r\nzset-max-listpack-entries\r\n$2\r\n77\r\n", "CONFIG", "GET", "zset-max-listpack-entries")
	if _, err := masters[0].Do("CONFIG", "SET", "zset-max-listpack-entries", "44"); err != nil {
		t.Fatal(err)
	}
	do(on, "*2\r\n$25\r\nzset-max-listpack-entries\r\n$2\r\n44\r\n", "CONFIG", "GET", "zset-max-listpack-entries")
	_, v := configPairs(t, on.do("CONFIG", "GET", "zset-max-*"))
	if v["zset-max-listpack-entries"] != "44" || len(v) != 4 {
		t.Errorf("CONFIG GET zset-max-* = %v, want the first master's zset-max-listpack-entries 44, its "+
			"zset-max-listpack-value and their ziplist aliases", v)
	}
}
