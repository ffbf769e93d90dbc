package proxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScanLarge: SCAN through the proxy walks every master; each of 30,000 keys spread over all of them is
// returned at least once and no other key is, whatever COUNT, with the cursor continued on another
// connection (a cursor is the client's, not the connection's), and TYPE filters as Redis does.
func TestScanLarge(t *testing.T) {
	addr, _, cluster := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	const n = 30000
	want := map[string]bool{}
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("scanlarge:%d", i)
		want[k] = true
		pipe.Set(ctx, k, i, 0)
	}
	for i := 0; i < 100; i++ {
		pipe.HSet(ctx, fmt.Sprintf("scanlarge:h:%d", i), "f", i)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	onMaster := 0
	for _, m := range cluster.Masters() {
		keys, err := m.Client(t).Keys(ctx, "scanlarge:*").Result()
		if err != nil || len(keys) < n/4 {
			t.Fatalf("a master holds %d of the keys (%v): the test would not cross masters", len(keys), err)
		}
		onMaster += len(keys)
	}
	if onMaster != n+100 {
		t.Fatalf("the masters hold %d keys, want %d", onMaster, n+100)
	}

	other := newClient(addr)
	defer other.Close()
	for _, count := range []int64{1, 10, 1000, 100000} {
		seen := map[string]int{}
		var cursor uint64
		calls := 0
		for {
			cl := c
			if calls%2 == 1 {
				cl = other
			}
			keys, next, err := cl.ScanType(ctx, cursor, "scanlarge:*", count, "string").Result()
			if err != nil {
				t.Fatalf("SCAN %d COUNT %d: %v", cursor, count, err)
			}
			for _, k := range keys {
				seen[k]++
			}
			calls++
			if cursor = next; cursor == 0 {
				break
			}
			if calls > 2*n {
				t.Fatalf("COUNT %d: SCAN did not end after %d calls", count, calls)
			}
		}
		missing, extra, dup := 0, 0, 0
		for k := range want {
			if seen[k] == 0 {
				missing++
			}
		}
		for k, times := range seen {
			if !want[k] {
				extra++
			}
			dup += times - 1
		}
		t.Logf("COUNT %d: %d calls, %d keys, %d returned twice", count, calls, len(seen), dup)
		// Redis may return a key twice while a table rehashes, never miss one that stayed.
		if missing != 0 || extra != 0 || dup > n/10 {
			t.Errorf("COUNT %d: %d keys missing, %d not asked for (hashes included), %d duplicates", count, missing,
				extra, dup)
		}
	}
	hashes, _, err := c.ScanType(ctx, 0, "scanlarge:*", 100000, "hash").Result()
	if err != nil {
		t.Fatal(err)
	}
	// One call returns the first master's hashes; walk on for the rest.
	var all []string
	for cursor := uint64(0); ; {
		keys, next, err := c.ScanType(ctx, cursor, "scanlarge:h:*", 100000, "hash").Result()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, keys...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) != 100 || len(hashes) == 0 || len(hashes) >= 100 {
		t.Errorf("SCAN TYPE hash: %d distinct hashes over the walk (want 100), %d in the first call (want one "+
			"master's share)", len(all), len(hashes))
	}
}

// TestInfoLikeStandalone: INFO through the proxy has a standalone server's sections, says it is standalone,
// and adds a # Proxy section whose figures are exact.
func TestInfoLikeStandalone(t *testing.T) {
	_, standalone, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs())
	ctx := context.Background()
	px := dialRaw(t, addr)
	info := func(args ...string) string {
		t.Helper()
		return string(px.do(append([]string{"INFO"}, args...)...))
	}
	headers := func(text string) []string {
		return regexp.MustCompile(`(?m)^# (\w+)\r$`).FindAllString(text, -1)
	}
	alone, err := newClient(standalone.Addr).Info(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	got := info()
	if h, w := headers(got), append(headers(alone), "# Proxy\r"); !slices.Equal(h, w) {
		t.Errorf("INFO sections %q, want a standalone server's and # Proxy: %q", h, w)
	}
	for _, line := range []string{"redis_mode:standalone\r\n", "cluster_enabled:0\r\n"} {
		if !strings.Contains(got, line) {
			t.Errorf("INFO lacks %q", line)
		}
	}
	for _, line := range []string{"redis_mode:cluster", "cluster_enabled:1"} {
		if strings.Contains(got, line) {
			t.Errorf("INFO has %q: clients would switch to cluster mode", line)
		}
	}
	if h := headers(info("server")); !slices.Equal(h, []string{"# Server\r"}) {
		t.Errorf("INFO server has sections %q", h)
	}
	if h := headers(info("everything")); !slices.Contains(h, "# Proxy\r") {
		t.Errorf("INFO everything has no # Proxy: %q", h)
	}

	field := func(text, name string) int {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + name + `:(\d+)\r$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s in %q", name, text)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	held := []*rawConn{dialRaw(t, addr), dialRaw(t, addr)}
	for _, h := range held {
		if got := string(h.do("PING")); got != "+PONG\r\n" {
			t.Fatal(got)
		}
	}
	p := info("proxy")
	if h := headers(p); !slices.Equal(h, []string{"# Proxy\r"}) {
		t.Errorf("INFO proxy has sections %q", h)
	}
	for name, want := range map[string]int{"proxy_cluster_nodes": 6, "proxy_cluster_shards": 3,
		"proxy_event_loops": 2, "proxy_connected_clients": 3, "proxy_total_connections_received": 3} {
		if got := field(p, name); got != want {
			t.Errorf("%s:%d, want %d", name, got, want)
		}
	}
	before := field(p, "proxy_total_commands_processed")
	for i := 0; i < 10; i++ {
		px.do("GET", "info:k")
	}
	if d := field(info("proxy"), "proxy_total_commands_processed") - before; d != 11 {
		t.Errorf("10 GETs and an INFO counted as %d commands", d)
	}

	// The fields that describe a server describe the proxy: its process, port, clients and counts.
	all := info("everything")
	_, port, _ := net.SplitHostPort(addr)
	for name, want := range map[string]int{"process_id": os.Getpid(), "tcp_port": atoi(port),
		"connected_clients": 3, "total_connections_received": 3, "maxclients": 10000, "rejected_connections": 0,
		"total_commands_processed": field(all, "proxy_total_commands_processed")} {
		if got := field(all, name); got != want {
			t.Errorf("INFO %s:%d, want the proxy's %d", name, got, want)
		}
	}
	for range 2000 {
		px.do("PING")
	}
	time.Sleep(200 * time.Millisecond)
	if ops := field(info("stats"), "instantaneous_ops_per_sec"); ops == 0 {
		t.Errorf("instantaneous_ops_per_sec:0 after 2,000 PINGs")
	}
	// The keyspace is the cluster's: keys as DBSIZE counts them over every master, expires summed too.
	for i := range 3 {
		px.do("SET", fmt.Sprintf("info:ttl:%d", i), "v", "EX", "1000")
	}
	ks := info("keyspace")
	size := string(px.do("DBSIZE"))
	m := regexp.MustCompile(`(?m)^db0:keys=(\d+),expires=(\d+),avg_ttl=\d+\r$`).FindStringSubmatch(ks)
	if m == nil || ":"+m[1]+"\r\n" != size || atoi(m[2]) < 3 {
		t.Errorf("INFO keyspace %q, DBSIZE %q: want the keys of every master and at least 3 expires", ks, size)
	}
	// Every line keeps its section and its name: the same keys as a standalone server's (its own values).
	aloneAll, _ := newClient(standalone.Addr).Info(ctx, "everything").Result()
	keys := func(text string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(text, "\r\n") {
			if k, _, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(k, "cmdstat_") &&
				!strings.HasPrefix(k, "latency_percentiles_usec_") && !strings.HasPrefix(k, "errorstat_") &&
				!strings.HasPrefix(k, "db") && !strings.HasPrefix(k, "proxy_") {
				m[k] = true
			}
		}
		return m
	}
	for k := range keys(aloneAll) {
		if !keys(all)[k] && !strings.HasPrefix(k, "slave") && !strings.HasPrefix(k, "master_") {
			t.Errorf("INFO everything through the proxy has no %s", k)
		}
	}
	compareInfoFields(t, info("everything"), aloneAll)
	// The data's counters are the cluster's: every master's, summed.
	px.do("SET", "info:hit", "v")
	for range 10 {
		px.do("GET", "info:hit")
	}
	stats := info("stats")
	for _, name := range []string{"keyspace_hits", "keyspace_misses", "expired_keys", "evicted_keys"} {
		sum := 0
		for _, m := range cluster.Masters() {
			text, _ := bulkText(mustDo(t, m.Addr, "INFO", "stats"))
			sum += field(text, name)
		}
		if got := field(stats, name); got != sum {
			t.Errorf("INFO %s:%d through the proxy, the masters' sum is %d", name, got, sum)
		}
	}
	if m, err := newClient(addr).InfoMap(ctx, "everything").Result(); err != nil || m["Memory"]["used_memory"] == "" ||
		m["Server"]["run_id"] == "" || m["Proxy"]["proxy_version"] == "" {
		t.Errorf("go-redis InfoMap of INFO everything: %v %v", m, err)
	}
}

// compareInfoFields checks INFO through the proxy field by field against a standalone Redis's: each section
// has the same fields in the same order (the replication section's replica lines aside), each value of the
// same kind (integer, decimal, percentage, human size, text); the fields the proxy owns are consistent with
// one another and describe the proxy's process, not a node's.
func compareInfoFields(t *testing.T, proxyText, redisText string) {
	t.Helper()
	type field struct{ section, key, value string }
	parse := func(text string) (fields []field) {
		section := ""
		for _, l := range strings.Split(text, "\r\n") {
			if h, ok := strings.CutPrefix(l, "# "); ok {
				section = h
				continue
			}
			k, v, ok := strings.Cut(l, ":")
			if !ok || regexp.MustCompile(`^slave\d+$`).MatchString(k) {
				continue
			}
			switch section {
			case "Commandstats", "Latencystats", "Errorstats", "Keyspace", "Proxy":
				continue
			}
			fields = append(fields, field{section, k, v})
		}
		return fields
	}
	kind := func(v string) string {
		for name, re := range map[string]string{"integer": `^-?\d+$`, "decimal": `^-?\d+\.\d+$`,
			"percentage": `^\d+\.\d\d%$`, "human size": `^\d+(\.\d\d)?[BKMGTP]$`} {
			if regexp.MustCompile(re).MatchString(v) {
				return name
			}
		}
		return "text"
	}
	px, rd := parse(proxyText), parse(redisText)
	keysOf := func(fs []field) (out []string) {
		for _, f := range fs {
			out = append(out, f.section+"/"+f.key)
		}
		return out
	}
	if !slices.Equal(keysOf(px), keysOf(rd)) {
		t.Errorf("INFO fields through the proxy:\n%v\nstandalone Redis:\n%v", keysOf(px), keysOf(rd))
	}
	redis := map[string]string{}
	for _, f := range rd {
		redis[f.key] = f.value
	}
	values := map[string]string{}
	for _, f := range px {
		values[f.key] = f.value
		if r, ok := redis[f.key]; ok && kind(r) != kind(f.value) && !(kind(r) == "integer" && kind(f.value) == "text" && f.value == "") {
			t.Errorf("INFO %s:%s through the proxy is %s; a standalone Redis gives %s (%s)", f.key, f.value,
				kind(f.value), kind(r), r)
		}
	}
	num := func(k string) float64 {
		v, err := strconv.ParseFloat(strings.TrimSuffix(values[k], "%"), 64)
		if err != nil {
			t.Errorf("INFO %s:%q is not a number", k, values[k])
		}
		return v
	}
	human := func(k string) float64 {
		v := values[k]
		mult := map[byte]float64{'B': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[v[len(v)-1]]
		n, _ := strconv.ParseFloat(v[:len(v)-1], 64)
		return n * mult
	}
	for _, k := range []string{"used_memory", "used_memory_rss", "used_memory_peak", "total_system_memory"} {
		if n, h := num(k), human(k+"_human"); n <= 0 || h < n*0.99 || h > n*1.01 {
			t.Errorf("INFO %s:%v and %s_human:%s disagree", k, n, k, values[k+"_human"])
		}
	}
	if num("used_memory_peak") < num("used_memory") || num("allocator_resident") < num("allocator_active") ||
		num("allocator_active") < num("allocator_allocated") {
		t.Errorf("INFO memory figures out of order: %v", values)
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	used := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	if cpu := num("used_cpu_user") + num("used_cpu_sys"); cpu <= 0 || cpu > used {
		t.Errorf("INFO used_cpu_user+sys = %v s, this process (the proxy's) has used %v s since", cpu, used)
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(values["run_id"]) || values["run_id"] == redis["run_id"] ||
		!strings.HasPrefix(values["mem_allocator"], "go") || values["used_memory_dataset"] != "0" {
		t.Errorf("INFO run_id %q, mem_allocator %q, used_memory_dataset %q: want the proxy's", values["run_id"],
			values["mem_allocator"], values["used_memory_dataset"])
	}
	if num("total_reads_processed") < num("total_commands_processed")/2 || num("total_writes_processed") == 0 {
		t.Errorf("INFO total_reads_processed %v, total_writes_processed %v for %v commands",
			values["total_reads_processed"], values["total_writes_processed"], values["total_commands_processed"])
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
