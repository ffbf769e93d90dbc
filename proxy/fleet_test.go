package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/topology"
)

// This file tests a fleet of proxies (README "Running several proxies"): one poller for the fleet, and the
// cluster facade.

type fleetProxy struct {
	addr  string
	srv   *proxy.Server
	peers *topology.Peers // nil with gossip off
}

// startFleet starts n proxies in this process over seeds; with gossip they join the first one's fleet
// (secret set, LAN timing) through Server.JoinPeers, as main does.
func startFleet(t *testing.T, seeds []string, n int, gossip bool, tweak func(*proxy.Config)) []fleetProxy {
	t.Helper()
	var fleet []fleetProxy
	t.Cleanup(func() { // all at once: each waits up to a second for its leave to be heard
		var wg sync.WaitGroup
		for _, p := range fleet {
			if p.peers != nil {
				wg.Go(func() { p.peers.Close(time.Second) })
			}
		}
		wg.Wait()
	})
	for range n {
		addr, srv := startProxyOpt(t, seeds, false, func(c *proxy.Config) {
			if tweak != nil {
				tweak(c)
			}
			if gossip {
				c.Peers.Bind = "127.0.0.1:0"
				c.Peers.Secret = "0123456789abcdef"
				if len(fleet) > 0 {
					c.Peers.Join = []string{fleet[0].peers.Addr()}
				}
			}
		})
		fp := fleetProxy{addr: addr, srv: srv}
		if gossip {
			p, err := srv.JoinPeers(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
			fp.peers = p
		}
		fleet = append(fleet, fp)
	}
	if gossip {
		eventually(t, 10*time.Second, fmt.Sprintf("%d members everywhere", n), func() bool {
			for _, p := range fleet {
				if p.peers.Members() != n {
					return false
				}
			}
			return true
		})
	}
	return fleet
}

// clusterSlotsCalls sums CLUSTER SLOTS calls over the cluster's nodes (INFO commandstats).
func clusterSlotsCalls(t *testing.T, cl *redistest.Cluster) int {
	t.Helper()
	re := regexp.MustCompile(`cmdstat_cluster\|slots:calls=(\d+)`)
	total := 0
	for _, addr := range cl.Addrs() {
		info, _, err := rawDo(addr, 2*time.Second, "INFO", "commandstats")
		if err != nil {
			t.Fatal(err)
		}
		if m := re.FindSubmatch(info); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			total += n
		}
	}
	return total
}

// durationEnv reads a duration from the environment, for runs at other settings than the suite's.
func durationEnv(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	return def
}

// TestPollsAtRest: CLUSTER SLOTS calls the cluster gets from 3 and from 10 idle proxies, each polling on
// its own (gossip off) and with one poller for the fleet (gossip on). The suite polls every 500 ms over 6 s;
// SLOTPROXY_POLL_INTERVAL=5s SLOTPROXY_POLL_WINDOW=60s measures the default settings over a minute.
func TestPollsAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	interval := durationEnv(t, "SLOTPROXY_POLL_INTERVAL", 500*time.Millisecond)
	window := durationEnv(t, "SLOTPROXY_POLL_WINDOW", 6*time.Second)
	rounds := float64(window) / float64(interval)
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	for _, n := range []int{3, 10} {
		for _, gossip := range []bool{false, true} {
			name := fmt.Sprintf("%d proxies, gossip %v", n, map[bool]string{false: "off", true: "on"}[gossip])
			t.Run(name, func(t *testing.T) {
				fleet := startFleet(t, cl.Addrs(), n, gossip, func(c *proxy.Config) {
					c.RefreshInterval = proxy.Duration(interval)
				})
				time.Sleep(2 * interval) // start-up rounds, and the first hints of the poller
				before := clusterSlotsCalls(t, cl)
				time.Sleep(window)
				calls := clusterSlotsCalls(t, cl) - before
				t.Logf("%s: %d CLUSTER SLOTS calls in %v, %.0f a minute (refresh every %v)", name, calls, window,
					float64(calls)*float64(time.Minute)/float64(window), interval)
				if !gossip {
					if float64(calls) < 0.6*float64(n)*rounds {
						t.Errorf("%d calls, want about %.0f (every proxy polls)", calls, float64(n)*rounds)
					}
					return
				}
				if float64(calls) > 1.5*rounds+2 {
					t.Errorf("%d calls, want about %.0f (one poller for the fleet)", calls, rounds)
				}
				poller := fleet[0].peers.Poller()
				for _, p := range fleet {
					info := string(dialRaw(t, p.addr).do("INFO", "proxy"))
					if got := infoField(info, "proxy_peers_poller"); got != poller {
						t.Errorf("%s says the poller is %q, the first proxy says %q", p.addr, got, poller)
					}
					skipped, _ := strconv.Atoi(infoField(info, "proxy_topology_polls_skipped"))
					if isPoller := p.peers.Name() == poller; isPoller != (skipped == 0) {
						t.Errorf("%s (poller %v) skipped %d rounds", p.addr, isPoller, skipped)
					}
				}
			})
		}
	}
}

// facadeNodes reads CLUSTER NODES from addr: the lines, split into fields.
func facadeNodes(addr string) ([][]string, error) {
	got, _, err := rawDo(addr, 2*time.Second, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	text, ok := bulkText(got)
	if !ok {
		return nil, fmt.Errorf("CLUSTER NODES answered %q", got)
	}
	var lines [][]string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l != "" {
			lines = append(lines, strings.Fields(l))
		}
	}
	return lines, nil
}

func bulkText(reply []byte) (string, bool) {
	s := string(reply)
	if !strings.HasPrefix(s, "$") {
		return "", false
	}
	i := strings.Index(s, "\r\n")
	n, err := strconv.Atoi(s[1:i])
	if err != nil || len(s) < i+2+n {
		return "", false
	}
	return s[i+2 : i+2+n], true
}

// TestClusterFacade: three proxies with cluster_facade. Each answers CLUSTER SLOTS, SHARDS, NODES, INFO,
// MYID and KEYSLOT as one Redis Cluster of the three, the same from every proxy; COUNTKEYSINSLOT and
// GETKEYSINSLOT reach the node of the slot and check their arguments as Redis does; INFO and HELLO say
// cluster. go-redis's ClusterClient and redis-cli -c given one proxy spread over all three.
func TestClusterFacade(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, _, cl := shared(t)
	fleet := startFleet(t, cl.Addrs(), 3, true, func(c *proxy.Config) { c.Peers.ClusterFacade = true })
	var addrs []string
	for _, p := range fleet {
		addrs = append(addrs, p.addr)
	}
	eventually(t, 5*time.Second, "3 nodes in every facade", func() bool {
		for _, a := range addrs {
			if lines, err := facadeNodes(a); err != nil || len(lines) != 3 {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	if testing.Verbose() {
		for _, args := range [][]string{{"CLUSTER", "SLOTS"}, {"CLUSTER", "NODES"}, {"CLUSTER", "SHARDS"}} {
			out, _ := exec.Command("redis-cli", append([]string{"-p", strings.Split(addrs[0], ":")[1]}, args...)...).CombinedOutput()
			t.Logf("%v:\n%s", args, out)
		}
	}
	var slots0 []byte
	for i, a := range addrs {
		rc := dialRaw(t, a)
		slots := rc.do("CLUSTER", "SLOTS")
		if i == 0 {
			slots0 = slots
		} else if string(slots) != string(slots0) {
			t.Errorf("CLUSTER SLOTS differs between proxies:\n%q\n%q", slots0, slots)
		}
		lines, _ := facadeNodes(a)
		myid, _ := bulkText(rc.do("CLUSTER", "MYID"))
		var mine []string
		for _, f := range lines {
			if strings.Contains(f[2], "myself") {
				mine = append(mine, f[0])
			}
			if len(f) != 9 || f[3] != "-" || f[7] != "connected" || !strings.HasSuffix(f[2], "master") {
				t.Errorf("%s: CLUSTER NODES line %q", a, strings.Join(f, " "))
			}
		}
		if len(mine) != 1 || mine[0] != myid || !strings.Contains(strings.Join(lines[0], " ")+
			strings.Join(lines[1], " ")+strings.Join(lines[2], " "), myid+" "+a+"@") {
			t.Errorf("%s: MYID %q, myself lines %v", a, myid, mine)
		}
		info, _ := bulkText(rc.do("CLUSTER", "INFO"))
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:3",
			"cluster_size:3"} {
			if !strings.Contains(info, want+"\r\n") {
				t.Errorf("%s: CLUSTER INFO without %s:\n%s", a, want, info)
			}
		}
		if got := string(rc.do("CLUSTER", "KEYSLOT", "foo")); got != ":12182\r\n" {
			t.Errorf("KEYSLOT foo = %q", got)
		}
		if got := infoField(string(rc.do("INFO", "cluster")), "cluster_enabled"); got != "1" {
			t.Errorf("%s: INFO cluster_enabled:%s with the facade", a, got)
		}
		if got := string(rc.do("HELLO", "2")); !strings.Contains(got, "$4\r\nmode\r\n$7\r\ncluster\r\n") {
			t.Errorf("%s: HELLO without mode cluster: %q", a, got)
		}
	}
	// RESP3: the types a node uses (an empty map for each node's metadata, maps for SHARDS, verbatim text).
	r3 := dialRaw(t, addrs[0])
	r3.do("HELLO", "3")
	if got := string(r3.do("CLUSTER", "SLOTS")); strings.Count(got, "\r\n%0\r\n") != 3 || strings.Contains(got, "*0\r\n") {
		t.Errorf("CLUSTER SLOTS in RESP3: %q", got)
	}
	if got := string(r3.do("CLUSTER", "SHARDS")); !strings.HasPrefix(got, "*3\r\n%2\r\n$5\r\nslots\r\n*2\r\n:") ||
		strings.Count(got, "\r\n%7\r\n$2\r\nid\r\n") != 3 {
		t.Errorf("CLUSTER SHARDS in RESP3: %q", got)
	}
	for _, sub := range []string{"NODES", "INFO"} {
		if got := string(r3.do("CLUSTER", sub)); !strings.HasPrefix(got, "=") || !strings.Contains(got, "\r\ntxt:") {
			t.Errorf("CLUSTER %s in RESP3: %q", sub, got)
		}
	}
	// COUNTKEYSINSLOT and GETKEYSINSLOT: the node's own answers, and Redis's errors.
	node := cl.Masters()[0].Addr
	for _, args := range [][]string{
		{"CLUSTER", "COUNTKEYSINSLOT", "99999"}, {"CLUSTER", "COUNTKEYSINSLOT", "abc"},
		{"CLUSTER", "COUNTKEYSINSLOT", "-1"}, {"CLUSTER", "GETKEYSINSLOT", "1", "-1"},
		{"CLUSTER", "GETKEYSINSLOT", "1", "x"}, {"CLUSTER", "GETKEYSINSLOT", "16384", "1"},
		{"CLUSTER", "COUNTKEYSINSLOT"},
	} {
		want, _, _ := rawDo(node, 2*time.Second, args...)
		if got := dialRaw(t, addrs[1]).do(args...); string(got) != string(want) {
			t.Errorf("%v: %q, a node answers %q", args, got, want)
		}
	}
	key := "facade:{counted}"
	if err := newClient(addrs[0]).Set(ctx, key, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot := strconv.Itoa(int(topology.Slot([]byte(key))))
	if got := string(dialRaw(t, addrs[2]).do("CLUSTER", "COUNTKEYSINSLOT", slot)); got != ":1\r\n" {
		t.Errorf("COUNTKEYSINSLOT %s = %q, want 1", slot, got)
	}
	if got := string(dialRaw(t, addrs[2]).do("CLUSTER", "GETKEYSINSLOT", slot, "10")); !strings.Contains(got, key) {
		t.Errorf("GETKEYSINSLOT %s = %q, want %s", slot, got, key)
	}

	// go-redis's ClusterClient, given one proxy.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addrs[0]}})
	defer cc.Close()
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	var seen []string
	for _, r := range ranges {
		if r.Start != next || len(r.Nodes) != 1 {
			t.Fatalf("CLUSTER SLOTS through go-redis: %+v", ranges)
		}
		next = r.End + 1
		seen = append(seen, r.Nodes[0].Addr)
	}
	slices.Sort(seen)
	want := slices.Sorted(slices.Values(addrs))
	if next != 16384 || !slices.Equal(seen, want) {
		t.Errorf("the facade's slots end at %d, over %v; want 16384 over %v", next-1, seen, want)
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 3 {
		t.Fatalf("CLUSTER SHARDS through go-redis: %+v, %v", shards, err)
	}
	for _, sh := range shards {
		if len(sh.Nodes) != 1 || sh.Nodes[0].Role != "master" || sh.Nodes[0].Health != "online" {
			t.Errorf("CLUSTER SHARDS: %+v", sh)
		}
	}
	before := make([]int, 3)
	for i, a := range addrs {
		before[i], _ = strconv.Atoi(infoField(string(dialRaw(t, a).do("INFO", "proxy")), "proxy_total_commands_processed"))
	}
	for i := range 300 {
		if err := cc.Set(ctx, fmt.Sprintf("facade:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	plain := newClient(addrs[2])
	defer plain.Close()
	for i := range 300 {
		if v, err := plain.Get(ctx, fmt.Sprintf("facade:%d", i)).Int(); err != nil || v != i {
			t.Fatalf("facade:%d = %v, %v; want %d", i, v, err, i)
		}
	}
	for i, a := range addrs {
		n, _ := strconv.Atoi(infoField(string(dialRaw(t, a).do("INFO", "proxy")), "proxy_total_commands_processed"))
		if n-before[i] < 50 {
			t.Errorf("proxy %s served %d of the ClusterClient's 300 SETs, want about a third", a, n-before[i])
		}
	}

	// redis-cli -c, given one proxy.
	host, port := splitAddr(t, addrs[1])
	out, err := exec.Command("redis-cli", "-c", "-h", host, "-p", port, "CLUSTER", "SLOTS").CombinedOutput()
	if err != nil || strings.Count(string(out), "\n") < 12 {
		t.Errorf("redis-cli -c CLUSTER SLOTS: %v\n%s", err, out)
	}
	for _, a := range addrs {
		h, p := splitAddr(t, a)
		if !strings.Contains(string(out), h+"\n"+p+"\n") {
			t.Errorf("redis-cli -c CLUSTER SLOTS without %s:\n%s", a, out)
		}
	}
	cmd := exec.Command("redis-cli", "-c", "-h", host, "-p", port)
	cmd.Stdin = strings.NewReader("SET facade:cli hello\nGET facade:cli\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "OK\nhello\n" {
		t.Errorf("redis-cli -c SET and GET: %v %q", err, out)
	}
}

func splitAddr(t *testing.T, addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	return addr[:i], addr[i+1:]
}

// fleetBinary runs the proxy binary with the facade on, joining join (empty: the first of a fleet). It
// returns the process and its client and gossip addresses.
func fleetBinary(t *testing.T, seeds []string, join string) (*binProc, string, string) {
	addr, gossip := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	yaml := fmt.Sprintf("listen: %s\nmetrics: \"\"\nseeds: [%s]\nevent_loops: 2\npeers:\n  bind: %s\n"+
		"  secret: 0123456789abcdef\n  cluster_facade: true\n", addr, strings.Join(seeds, ", "), gossip)
	if join != "" {
		yaml += "  join: [" + join + "]\n"
	}
	p := runBinary(t, yaml)
	p.waitServes(t, addr)
	return p, addr, gossip
}

// facadeAddrs are the client addresses in addr's CLUSTER NODES, sorted.
func facadeAddrs(addr string) ([]string, error) {
	lines, err := facadeNodes(addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range lines {
		out = append(out, f[1][:strings.Index(f[1], "@")])
	}
	slices.Sort(out)
	return out, nil
}

// TestFacadeProxyKilled: three proxy processes with the facade, and go-redis ClusterClients (50 workers,
// each writing its own keys in turn) given all three. One proxy is SIGKILLed: the other two drop it from
// the facade as soon as its client port refuses connections, and memberlist finds it dead later (LAN
// timing); every write a client was told succeeded is there at the end, and the errors are counted:
// requests in flight on the dead proxy, and those the clients send it until they reload the map
// (ClusterStateReloadInterval, SLOTPROXY_FACADE_RELOAD, 2s here; go-redis's default is 60s). A new proxy
// then joins and is in the facade of the others within a second.
func TestFacadeProxyKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	p0, a0, g0 := fleetBinary(t, cl.Addrs(), "")
	_, a1, _ := fleetBinary(t, cl.Addrs(), g0)
	p2, a2, _ := fleetBinary(t, cl.Addrs(), g0)
	all := slices.Sorted(slices.Values([]string{a0, a1, a2}))
	p0.waitFor(t, 5*time.Second, "3 proxies in the facade", func() error {
		for _, a := range all {
			if got, err := facadeAddrs(a); err != nil || !slices.Equal(got, all) {
				return fmt.Errorf("%s: %v %v", a, got, err)
			}
		}
		return nil
	})
	reload := durationEnv(t, "SLOTPROXY_FACADE_RELOAD", 2*time.Second)
	redis.SetLogger(quietDials{}) // thousands of "failed to dial" lines while the dead proxy is in the map
	const workers = 50
	type workerLog struct {
		acked   map[string]int // key → the last value acknowledged
		tried   map[string]int // key → the last value attempted
		errs    []time.Time
		errText map[string]int
		slowest time.Duration
		slow    int // requests over 100 ms
	}
	logs := make([]*workerLog, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients := make([]*redis.ClusterClient, 5) // 10 workers share each, as an application's pool would
	for i := range clients {
		clients[i] = redis.NewClusterClient(&redis.ClusterOptions{Addrs: all, ClusterStateReloadInterval: reload})
		defer clients[i].Close()
	}
	for w := range workers {
		lg := &workerLog{acked: map[string]int{}, tried: map[string]int{}, errText: map[string]int{}}
		logs[w] = lg
		wg.Go(func() {
			cc := clients[w%len(clients)]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("fleet:%d:%d", w, i%200)
				lg.tried[key] = i
				began := time.Now()
				err := cc.Set(context.Background(), key, i, 0).Err()
				if took := time.Since(began); took > 100*time.Millisecond {
					lg.slow++
					lg.slowest = max(lg.slowest, took)
				}
				if err != nil {
					lg.errs = append(lg.errs, time.Now())
					msg := err.Error()
					if j := strings.Index(msg, "127.0.0.1"); j >= 0 {
						msg = msg[:j] // the address and port vary
					}
					lg.errText[msg]++
					continue
				}
				lg.acked[key] = i
			}
		})
	}
	time.Sleep(2 * time.Second)
	killed := time.Now()
	_ = p2.cmd.Process.Kill()
	<-p2.done
	live := slices.DeleteFunc(slices.Clone(all), func(a string) bool { return a == a2 })
	p0.waitFor(t, 30*time.Second, "the killed proxy gone from the facade", func() error {
		for _, a := range live {
			if got, err := facadeAddrs(a); err != nil || !slices.Equal(got, live) {
				return fmt.Errorf("%s: %v %v", a, got, err)
			}
		}
		return nil
	})
	dead := time.Since(killed)
	p0.waitFor(t, 30*time.Second, "memberlist finds the killed proxy dead", func() error {
		for _, a := range live {
			info, _, err := rawDo(a, 2*time.Second, "INFO", "proxy")
			if err != nil {
				return err
			}
			if alive, gone := infoField(string(info), "proxy_peers_alive"), infoField(string(info), "proxy_peers_dead"); alive != "2" || gone != "1" {
				return fmt.Errorf("%s: alive %s, dead %s", a, alive, gone)
			}
		}
		return nil
	})
	foundDead := time.Since(killed)
	time.Sleep(reload + time.Second) // the clients reload
	_, a3, _ := fleetBinary(t, cl.Addrs(), g0)
	joined := time.Now()
	grown := slices.Sorted(slices.Values(append(slices.Clone(live), a3)))
	p0.waitFor(t, time.Second, "the new proxy in the facade", func() error {
		for _, a := range live {
			if got, err := facadeAddrs(a); err != nil || !slices.Equal(got, grown) {
				return fmt.Errorf("%s: %v %v", a, got, err)
			}
		}
		return nil
	})
	inFacade := time.Since(joined)
	time.Sleep(reload + time.Second)
	close(stop)
	wg.Wait()

	var errs, afterDead, writes, slow int
	var slowest time.Duration
	texts := map[string]int{}
	var last time.Time
	for _, lg := range logs {
		errs += len(lg.errs)
		writes += len(lg.acked)
		slow += lg.slow
		slowest = max(slowest, lg.slowest)
		for _, at := range lg.errs {
			if at.After(killed.Add(dead)) {
				afterDead++
			}
			if at.After(last) {
				last = at
			}
		}
		for k, v := range lg.errText {
			texts[k] += v
		}
	}
	lastErr := "none"
	if !last.IsZero() {
		lastErr = last.Sub(killed).String()
	}
	t.Logf("killed proxy out of the facade after %v, found dead by memberlist after %v; new proxy in the facade "+
		"%v after it served; %d errors (%d after the facade changed), the last after %s; error texts %v "+
		"(client map reload every %v); %d requests over 100 ms, the slowest %v; %d keys written", dead, foundDead,
		inFacade, errs, afterDead, lastErr, texts, reload, slow, slowest, writes)
	// Nothing acknowledged is lost: each key holds its last acknowledged value or a later attempt.
	rc := newClient(a0)
	defer rc.Close()
	lost := 0
	for _, lg := range logs {
		for key, v := range lg.acked {
			got, err := rc.Get(context.Background(), key).Int()
			if err != nil || got < v || got > lg.tried[key] {
				lost++
				if lost < 5 {
					t.Errorf("%s = %d, %v; acknowledged %d, last tried %d", key, got, err, v, lg.tried[key])
				}
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
	if !last.IsZero() && last.Sub(killed) > dead+reload+time.Second {
		t.Errorf("errors went on %v after the kill; the facade changed after %v and the clients reload every %v",
			last.Sub(killed), dead, reload)
	}
}

// quietDials is go-redis's logger without its lines about failed dials.
type quietDials struct{}

func (quietDials) Printf(_ context.Context, format string, v ...any) {
	if line := fmt.Sprintf(format, v...); !strings.Contains(line, "failed to dial") {
		fmt.Fprintln(os.Stderr, "redis:", line)
	}
}

// liar is a fleet member that claims a map no cluster has.
type liar struct{ snap *topology.Snapshot }

func (l liar) Snapshot() *topology.Snapshot { return l.snap }
func (l liar) RequestRefresh()              {}

// TestBogusPeerHint: a member gossips a map of a future epoch that routes every slot to a node that does
// not exist. Each real proxy re-reads the cluster (its refresh count grows, and the cluster gets the
// CLUSTER SLOTS calls), keeps routing as the cluster says, and goes on serving.
func TestBogusPeerHint(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 0})
	fleet := startFleet(t, cl.Addrs(), 2, true, func(c *proxy.Config) {
		c.RefreshInterval = proxy.Duration(time.Hour) // only the hint makes them refresh
	})
	bogus := &topology.Snapshot{Shards: []topology.Shard{{Master: 0}}, Nodes: []topology.Node{{Addr: "10.255.255.1:1"}},
		Epoch: 1 << 40}
	lie, err := topology.StartPeers(topology.PeersConfig{Bind: "127.0.0.1:0", Secret: "0123456789abcdef",
		Join: []string{fleet[0].peers.Addr()}, Logger: slog.New(slog.DiscardHandler)}, liar{bogus})
	if err != nil {
		t.Fatal(err)
	}
	defer lie.Close(time.Second)
	eventually(t, 5*time.Second, "3 members", func() bool { return fleet[1].peers.Members() == 3 })
	time.Sleep(500 * time.Millisecond) // the liar's first hint, sent at its start, is heard
	var refreshes []uint64
	var versions []uint64
	for _, p := range fleet {
		refreshes = append(refreshes, p.srv.Topology().(*topology.Manager).Stats().Refreshes)
		versions = append(versions, snapshotOf(p.srv).Version)
	}
	calls := clusterSlotsCalls(t, cl)
	lie.Announce(bogus)
	eventually(t, 3*time.Second, "both proxies re-read the cluster", func() bool {
		for i, p := range fleet {
			if p.srv.Topology().(*topology.Manager).Stats().Refreshes <= refreshes[i] {
				return false
			}
		}
		return true
	})
	if got := clusterSlotsCalls(t, cl) - calls; got < 2 {
		t.Errorf("the cluster got %d CLUSTER SLOTS calls, want one from each proxy", got)
	}
	time.Sleep(200 * time.Millisecond)
	for i, p := range fleet {
		s := snapshotOf(p.srv)
		if s.Version != versions[i] {
			t.Errorf("proxy %d: map version %d, was %d: a peer's hint changed the routing", i, s.Version, versions[i])
		}
		for _, a := range s.MasterAddrs() {
			if nodeByAddr(cl, a) == nil {
				t.Errorf("proxy %d routes to %s, not a cluster node", i, a)
			}
		}
		c := dialRaw(t, p.addr)
		checkServes(t, c, fmt.Sprintf("proxy %d after the bogus hint", i))
	}
}
