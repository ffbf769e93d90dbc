package proxy_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

func topologySlot(key string) uint16 { return topology.Slot([]byte(key)) }

// TestCommandStats drives known traffic through a fresh proxy and checks that every counter and histogram
// moved by exactly that much: 100 GETs and 50 SETs (ok), 10 INCRs of a string (a node's error), 5 RENAMEs
// across slots (CROSSSLOT: rejected by the proxy), 3 unknown commands (in the total only), and 4 GETs to a
// master that holds every client for 2 s (CLIENT PAUSE) past a 300 ms timeout (deadline). The registry
// lints clean; INFO commandstats and latencystats have the proxy's counts, in a standalone Redis's format.
func TestCommandStats(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, standalone, _ := shared(t)
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.Timeout = proxy.Duration(300 * time.Millisecond)
	})
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	rc := &countingConn{rawConn: dialRaw(t, addr)}
	rc.do("SET", "stats:str", "abc")
	errorsBefore := string(rc.do("INFO", "errorstats"))
	before := gatherFamilies(t, reg)
	rc.counting = true // every byte the client sends and gets from here on, for the byte counters

	for range 100 {
		rc.do("GET", "stats:str")
	}
	for i := range 50 {
		rc.do("SET", fmt.Sprintf("stats:%d", i), "v")
	}
	for range 10 {
		if got := string(rc.do("INCR", "stats:str")); !strings.HasPrefix(got, "-ERR value is not an integer") {
			t.Fatalf("INCR of a string: %q", got)
		}
	}
	for range 5 {
		if got := string(rc.do("RENAME", "stats:a", "stats:b")); !strings.HasPrefix(got, "-CROSSSLOT") {
			t.Fatalf("RENAME across slots: %q", got)
		}
	}
	for range 3 {
		rc.do("NOSUCHCOMMAND")
	}
	snap := snapshotOf(srv)
	paused := snap.Nodes[snap.Shards[0].Master].Addr
	slowKey := keyInShard(snap, 0)
	mustDo(t, paused, "CLIENT", "PAUSE", "2000", "ALL")
	for range 4 {
		if got := string(rc.do("GET", slowKey)); !strings.HasPrefix(got, "-ERR proxy timeout") {
			t.Fatalf("GET on a paused master: %q", got)
		}
	}
	mustDo(t, paused, "CLIENT", "UNPAUSE")

	after := gatherFamilies(t, reg)
	rc.counting = false
	if d := after["slotproxy_client_read_bytes_total"] - before["slotproxy_client_read_bytes_total"]; d != float64(rc.sent) {
		t.Errorf("client_read_bytes_total moved by %v, the client sent %d", d, rc.sent)
	}
	if d := after["slotproxy_client_written_bytes_total"] - before["slotproxy_client_written_bytes_total"]; d != float64(rc.got) {
		t.Errorf("client_written_bytes_total moved by %v, the client got %d", d, rc.got)
	}
	errorsAfter := string(rc.do("INFO", "errorstats"))
	count := func(text, prefix string) int {
		m := regexp.MustCompile(`errorstat_` + prefix + `:count=(\d+)\r\n`).FindStringSubmatch(text)
		if m == nil {
			return 0
		}
		return atoi(m[1])
	}
	// ERR: 10 INCRs of a string, 3 unknown commands, 4 proxy timeouts; CROSSSLOT: the 5 RENAMEs.
	if d := count(errorsAfter, "ERR") - count(errorsBefore, "ERR"); d != 17 {
		t.Errorf("errorstat_ERR moved by %d, want 17:\n%s", d, errorsAfter)
	}
	if d := count(errorsAfter, "CROSSSLOT") - count(errorsBefore, "CROSSSLOT"); d != 5 {
		t.Errorf("errorstat_CROSSSLOT moved by %d, want 5:\n%s", d, errorsAfter)
	}
	want := map[string]float64{
		`slotproxy_requests_total{command="get",outcome="ok"}`:             100,
		`slotproxy_requests_total{command="get",outcome="deadline"}`:       4,
		`slotproxy_requests_total{command="get",outcome="error"}`:          0,
		`slotproxy_requests_total{command="set",outcome="ok"}`:             50,
		`slotproxy_requests_total{command="incr",outcome="error"}`:         10,
		`slotproxy_requests_total{command="incr",outcome="ok"}`:            0,
		`slotproxy_requests_total{command="rename",outcome="rejected"}`:    5,
		`slotproxy_request_duration_seconds_count{command="get"}`:          104,
		`slotproxy_request_duration_seconds_count{command="set"}`:          50,
		`slotproxy_request_duration_seconds_bucket{command="get",le="10"}`: 104,
		`slotproxy_commands_total`:                                         172,
	}
	for name, n := range want {
		if got := after[name] - before[name]; got != n {
			t.Errorf("%s moved by %v, want %v", name, got, n)
		}
	}
	// The 4 deadline GETs took 300 ms each: in the buckets above 250 ms, and in the sum.
	if got := after[`slotproxy_request_duration_seconds_bucket{command="get",le="0.25"}`] -
		before[`slotproxy_request_duration_seconds_bucket{command="get",le="0.25"}`]; got != 100 {
		t.Errorf("%v GETs within 250 ms, want the 100 that were not held", got)
	}
	if sum := after[`slotproxy_request_duration_seconds_sum{command="get"}`] -
		before[`slotproxy_request_duration_seconds_sum{command="get"}`]; sum < 1.2 || sum > 3 {
		t.Errorf("GET latency sum moved by %v s, want about 4 × 0.3 s", sum)
	}
	// Per node: the master of stats:str read the 100 GETs and the 10 INCRs (10 error replies); every reply's
	// latency is in its histogram; nothing is in flight once the traffic is over.
	strMaster := snap.Nodes[snap.MasterOf(topologySlot("stats:str"))].Addr
	node := func(m map[string]float64, name, addr string) float64 {
		return m[fmt.Sprintf(`slotproxy_backend_node_%s{addr=%q,role="master"}`, name, addr)]
	}
	if d := node(after, "replies_total", strMaster) - node(before, "replies_total", strMaster); d < 110 {
		t.Errorf("%s read %v replies, want at least the 100 GETs and 10 INCRs", strMaster, d)
	}
	if d := node(after, "error_replies_total", strMaster) - node(before, "error_replies_total", strMaster); d != 10 {
		t.Errorf("%s gave %v error replies, want the 10 INCRs'", strMaster, d)
	}
	for _, n := range cl.Masters() {
		if got, want := node(after, "reply_duration_seconds_count", n.Addr), node(after, "replies_total", n.Addr); got != want {
			t.Errorf("%s: %v reply latencies for %v replies", n.Addr, got, want)
		}
		if v := node(after, "in_flight", n.Addr); v != 0 {
			t.Errorf("%s: %v requests in flight after the traffic", n.Addr, v)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("the registry does not lint clean: %v %+v", err, problems)
	}

	// INFO commandstats and latencystats: the proxy's counts, in Redis's line formats.
	stats := string(rc.do("INFO", "commandstats"))
	if !strings.Contains(stats, "cmdstat_incr:calls=10,") || !strings.Contains(stats, ",rejected_calls=0,failed_calls=10\r\n") ||
		!strings.Contains(stats, "cmdstat_rename:calls=5,") {
		t.Errorf("INFO commandstats without the proxy's counts:\n%s", stats)
	}
	mustDo(t, standalone.Addr, "GET", "x")
	lineFormats := map[string]*regexp.Regexp{
		"commandstats": regexp.MustCompile(`^cmdstat_[a-z|-]+:calls=\d+,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=\d+,failed_calls=\d+$`),
		"latencystats": regexp.MustCompile(`^latency_percentiles_usec_[a-z|-]+:p50=\d+\.\d{3},p99=\d+\.\d{3},p99\.9=\d+\.\d{3}$`),
	}
	for section, re := range lineFormats {
		for who, a := range map[string]string{"proxy": addr, "standalone Redis": standalone.Addr} {
			text, _ := bulkText(mustDo(t, a, "INFO", section))
			lines := strings.Split(strings.TrimSpace(text), "\r\n")
			if len(lines) < 2 || lines[0] != "# "+strings.ToUpper(section[:1])+section[1:] {
				t.Errorf("%s INFO %s: %q", who, section, text)
				continue
			}
			for _, l := range lines[1:] {
				if !re.MatchString(l) {
					t.Errorf("%s INFO %s line %q is not in Redis's format", who, section, l)
				}
			}
		}
	}
	m, err := newClient(addr).InfoMap(context.Background(), "commandstats").Result()
	if err != nil || !strings.HasPrefix(m["Commandstats"]["cmdstat_rename"], "calls=5,usec=") {
		t.Errorf("go-redis InfoMap: %v %v", m["Commandstats"], err)
	}
}

// gatherFamilies flattens a registry's samples to name{labels} → value, as the text format writes them.
func gatherFamilies(t *testing.T, reg interface {
	Gather() ([]*dto.MetricFamily, error)
}) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := func(suffix string, extra ...string) string {
				all := append(append([]string(nil), labels...), extra...)
				if len(all) == 0 {
					return f.GetName() + suffix
				}
				return f.GetName() + suffix + "{" + strings.Join(all, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key("")] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key("")] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				h := m.GetHistogram()
				out[key("_count")] = float64(h.GetSampleCount())
				out[key("_sum")] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					out[key("_bucket", fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

// countingConn is a rawConn that adds up what it sends and receives while counting.
type countingConn struct {
	*rawConn
	counting  bool
	sent, got int
}

func (c *countingConn) do(args ...string) []byte {
	c.t.Helper()
	r := c.rawConn.do(args...)
	if c.counting {
		c.sent += len(resp.AppendCommandStrings(nil, args...))
		c.got += len(r)
	}
	return r
}

// TestCountersThroughFailover: four clients without retries send SET, GET and INCR through a proxy while
// shard 0 fails over twice: a manual failover (CLUSTER FAILOVER on the replica), then a SIGKILL of the
// promoted master (its old master, now its replica, takes over). Every reply a client saw is in
// requests_total exactly once, under its outcome (ok, or an error of any kind), and in the latency
// histogram; commands_total is their sum. What the failovers cost shows: MOVED replies absorbed, requests
// retried because a node was unreachable, connections lost and dials failed, refreshes asked for by
// requests, a higher config epoch and map version, and the node series under their new roles. The registry
// lints clean.
func TestCountersThroughFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.Timeout = proxy.Duration(8 * time.Second)
	})
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	snap := snapshotOf(srv)
	first := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
	second := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	shardKey := keyInShard(snap, 0)
	before := gatherFamilies(t, reg)

	type counts struct{ ok, failed map[string]int }
	const workers = 4
	results := make(chan counts, workers)
	var errs errorLines
	ctx, cancel := context.WithCancel(context.Background())
	for w := range workers {
		go func() {
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 15 * time.Second})
			defer c.Close()
			n := counts{map[string]int{}, map[string]int{}}
			for i := 0; ctx.Err() == nil; i++ {
				// Half the keys in shard 0, the one that fails over; the others spread over the cluster.
				key := fmt.Sprintf("fo:%d:%d", w, i%50)
				if i%2 == 0 {
					key = fmt.Sprintf("{%s}:%d:%d", shardKey, w, i%50)
				}
				var cmd redis.Cmder
				switch i % 3 {
				case 0:
					cmd = c.Set(context.Background(), key, i, 0)
				case 1:
					cmd = c.Get(context.Background(), key)
				default:
					cmd = c.Incr(context.Background(), key+":n")
				}
				name := cmd.Name()
				if err := cmd.Err(); err != nil && err != redis.Nil {
					n.failed[name]++
					errs.add(name + ": " + err.Error())
					continue
				}
				n.ok[name]++
			}
			results <- n
		}()
	}

	time.Sleep(500 * time.Millisecond)
	if err := second.Client(t).ClusterFailover(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the replica promoted", func() bool { return isMaster(second) })
	eventually(t, 5*time.Second, "the proxy routes shard 0 to it", func() bool {
		s := snapshotOf(srv)
		return s.Nodes[s.MasterOf(topologySlot(shardKey))].Addr == second.Addr
	})
	time.Sleep(300 * time.Millisecond)
	second.Kill()
	eventually(t, 20*time.Second, "the old master promoted again", func() bool { return isMaster(first) })
	eventually(t, 5*time.Second, "the proxy routes shard 0 back to it", func() bool {
		s := snapshotOf(srv)
		return s.Nodes[s.MasterOf(topologySlot(shardKey))].Addr == first.Addr
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	seen := counts{map[string]int{}, map[string]int{}}
	for range workers {
		n := <-results
		for k, v := range n.ok {
			seen.ok[k] += v
		}
		for k, v := range n.failed {
			seen.failed[k] += v
		}
	}
	after := gatherFamilies(t, reg)
	d := func(name string) float64 { return after[name] - before[name] }
	t.Logf("clients saw ok %v, failed %v (%v)", seen.ok, seen.failed, errs.all())
	t.Logf("moved %v, ask %v, retries unreachable %v / clusterdown %v / readonly %v, connections lost %v, dial errors %v, "+
		"refreshes requested %v, config epoch +%v, map version +%v", d("slotproxy_backend_moved_total"),
		d("slotproxy_backend_ask_total"), d(`slotproxy_backend_retries_total{reason="unreachable"}`),
		d(`slotproxy_backend_retries_total{reason="clusterdown"}`), d(`slotproxy_backend_retries_total{reason="readonly"}`),
		d("slotproxy_backend_connections_lost_total"), d("slotproxy_backend_dial_errors_total"),
		d(`slotproxy_topology_refreshes_total{reason="requested"}`), d("slotproxy_topology_config_epoch"),
		d("slotproxy_slot_map_version"))

	var sum float64
	for name, v := range after {
		if strings.HasPrefix(name, "slotproxy_requests_total{") {
			sum += v - before[name]
		}
	}
	if got := d("slotproxy_commands_total"); got != sum {
		t.Errorf("commands_total moved by %v, requests_total by %v in all", got, sum)
	}
	for _, cmd := range []string{"set", "get", "incr"} {
		ok := d(fmt.Sprintf(`slotproxy_requests_total{command=%q,outcome="ok"}`, cmd))
		var failed float64
		for _, o := range []string{"rejected", "error", "deadline"} {
			failed += d(fmt.Sprintf(`slotproxy_requests_total{command=%q,outcome=%q}`, cmd, o))
		}
		count := d(fmt.Sprintf(`slotproxy_request_duration_seconds_count{command=%q}`, cmd))
		total := float64(seen.ok[cmd] + seen.failed[cmd])
		if ok != float64(seen.ok[cmd]) || failed != float64(seen.failed[cmd]) || count != total {
			t.Errorf("%s: requests_total ok %v, failed %v, histogram count %v; the clients saw %d ok, %d failed",
				cmd, ok, failed, count, seen.ok[cmd], seen.failed[cmd])
		}
		if seen.ok[cmd] < 100 {
			t.Errorf("only %d %s answered: too little traffic to tell", seen.ok[cmd], cmd)
		}
	}
	// Only an INCR written to the killed master may fail: the proxy cannot know whether it ran.
	if seen.failed["set"]+seen.failed["get"] > 0 || seen.failed["incr"] > workers {
		t.Errorf("failed requests %v: only INCRs in flight at the kill may fail", seen.failed)
	}
	for name, atLeast := range map[string]float64{
		"slotproxy_backend_moved_total":                           1, // the manual failover's old master answers MOVED
		`slotproxy_backend_retries_total{reason="unreachable"}`:   1, // the killed master's requests wait for the promotion
		"slotproxy_backend_connections_lost_total":                1,
		"slotproxy_backend_dial_errors_total":                     1,
		`slotproxy_topology_refreshes_total{reason="requested"}`:  1,
		"slotproxy_topology_config_epoch":                         1,
		"slotproxy_slot_map_version":                              2,
		`slotproxy_backend_retries_total{reason="tryagain"}`:      0,
		`slotproxy_limit_rejections_total{limit="max_clients"}`:   0,
		`slotproxy_limit_rejections_total{limit="output_buffer"}`: 0,
	} {
		if got := d(name); got < atLeast || atLeast == 0 && got != 0 {
			t.Errorf("%s moved by %v, want %s %v", name, got, map[bool]string{true: "=", false: ">="}[atLeast == 0], atLeast)
		}
	}
	node := func(name, addr, role string) float64 {
		return after[fmt.Sprintf(`slotproxy_backend_node_%s{addr=%q,role=%q}`, name, addr, role)]
	}
	if node("replies_total", first.Addr, "master") == 0 {
		t.Errorf("no replies under %s's series as a master again", first.Addr)
	}
	if node("replies_total", second.Addr, "master") != 0 {
		t.Errorf("the killed %s is still listed as a master", second.Addr)
	}
	for name, v := range after {
		if rest, ok := strings.CutPrefix(name, "slotproxy_backend_node_replies_total"); ok {
			if got := after["slotproxy_backend_node_reply_duration_seconds_count"+rest]; got != v {
				t.Errorf("node %s: %v reply latencies for %v replies", rest, got, v)
			}
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("the registry does not lint clean: %v %+v", err, problems)
	}
}
