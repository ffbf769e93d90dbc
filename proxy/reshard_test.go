package proxy_test

import (
	"context"
	"fmt"
	"os/exec"
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

// TestLiveReshard moves 3,000 slots holding 170,020 keys with redis-cli --cluster reshard while 50 clients
// run, multi-key MGET/MSET on keys of migrating slots included (ASK, TRYAGAIN): zero client-visible errors,
// every reply checked, every acknowledged write and every preloaded key reads back, every counter equals its
// acknowledged INCRs, and MGETs of pairs in slots under migration are answered right through TRYAGAIN.
func TestLiveReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { liveReshard(t, tg) })
	}
}

func liveReshard(t *testing.T, tg target) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	snap := snapshotOf(srv)
	src := cl.Node(snap.Nodes[snap.Shards[0].Master].Addr)
	dst := cl.Node(snap.Nodes[snap.Shards[1].Master].Addr)
	ctx := context.Background()

	// 100,000+ keys in the slots redis-cli will move: the source's lowest 3,000 slots.
	lo := firstSlot(snap, 0)
	c := newClient(addr)
	defer c.Close()
	var keys, values []string // preloaded, each with its value
	preload := func(k string, v int) {
		keys, values = append(keys, k), append(values, strconv.Itoa(v))
	}
	for i := 0; len(keys) < 110000; i++ {
		k := fmt.Sprintf("pre:%d", i)
		if s := int(topology.Slot([]byte(k))); s >= lo && s < lo+3000 {
			preload(k, i)
		}
	}
	// 20 of the moving slots hold 3,000 more keys each, so redis-cli moves them in many MIGRATE batches: while
	// one migrates, an MGET of {tag}a (set) and {tag}b (absent) is answered ASK by the source and TRYAGAIN by
	// the target, which the proxy must wait out.
	pairs := tagsInSlots(lo, lo+3000, 20)
	for i, tag := range pairs {
		preload(tag+"a", i)
		for j := 0; j < 3000; j++ {
			preload(fmt.Sprintf("%sf:%d", tag, j), j)
		}
	}
	for from := 0; from < len(keys); from += 5000 {
		pipe := c.Pipeline()
		for j := from; j < min(from+5000, len(keys)); j++ {
			pipe.Set(ctx, keys[j], values[j], 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dstBefore, err := dst.Client(t).DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}

	srcID, _ := src.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ := dst.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	stop := startLoadWith(t, clientsFor(tg, addr, cl), "rs")
	// The probe has a proxy of its own, so that its TRYAGAIN count is the probe's.
	stopProbe := func() (int, []string) { return 0, nil }
	var probeSrv *proxy.Server
	if tg.proxy { // the same load for both; the probe is the proxy's alone
		var probeAddr string
		probeAddr, probeSrv = startProxyOpt(t, cl.Addrs(), false)
		stopProbe = probePairs(t, probeAddr, pairs)
	}
	start := time.Now()
	out, err := exec.Command("redis-cli", "--cluster", "reshard", src.Addr, "--cluster-from", srcID,
		"--cluster-to", dstID, "--cluster-slots", "3000", "--cluster-yes", "--cluster-pipeline", "100").CombinedOutput()
	if err != nil {
		stop()
		t.Fatalf("reshard: %v\n%s", err, tail(string(out), 20))
	}
	done := time.Now()
	time.Sleep(time.Second)
	res := stop()
	probes, probeErrs := stopProbe()

	dstAfter, err := dst.Client(t).DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	moved := dstAfter - dstBefore
	during := res.Window(start, done)
	all := res.Window(time.Time{}, time.Time{})
	st := srv.BackendStats()
	report(t, "live reshard (3,000 slots, 170k keys)", tg.name, during, res, nil)
	t.Logf("%s: reshard of 3000 slots took %v and moved %d keys; during: %v; whole run: %v; lost writes %d, "+
		"counter mismatches %d; absorbed: MOVED %d, ASK %d, TRYAGAIN %d", tg.name, done.Sub(start).Round(time.Millisecond),
		moved, during, all, res.LostWrites, res.CounterMismatch, st.Moved, st.Ask, st.TryAgain)
	if moved < int64(len(keys)) {
		t.Errorf("%d keys moved to the target, fewer than the %d preloaded there", moved, len(keys))
	}
	readBack(t, c, keys, values)
	if !tg.proxy {
		return
	}
	if all.Errors != 0 {
		t.Errorf("%d client-visible errors: %v", all.Errors, all.ErrorSamples)
	}
	latencyWithin(t, during, 100*time.Millisecond, time.Second) // README table: p99 13 ms, max 40 ms
	requireIntact(t, res, nil)
	t.Logf("%d MGETs of a pair in a moving slot, %d wrong", probes, len(probeErrs))
	if len(probeErrs) > 0 {
		t.Errorf("%d MGETs of a pair in a moving slot went wrong: %v", len(probeErrs), probeErrs[:min(5, len(probeErrs))])
	}
	if st.Ask == 0 || st.Moved == 0 {
		t.Errorf("the reshard produced no ASK (%d) or MOVED (%d) at the proxy: the test proves nothing", st.Ask, st.Moved)
	}
	if n := probeSrv.BackendStats().TryAgain; n == 0 {
		t.Error("no probe MGET met TRYAGAIN: the test proves nothing")
	} else {
		t.Logf("probe MGETs waited out %d TRYAGAIN replies", n)
	}
}

// tagsInSlots returns n hash tags "{...}" of slots spread evenly over [lo, hi).
func tagsInSlots(lo, hi, n int) []string {
	want := map[int]int{} // slot → index
	for i := 0; i < n; i++ {
		want[lo+i*(hi-lo)/n] = i
	}
	tags := make([]string, n)
	for i, found := 0, 0; found < n; i++ {
		tag := fmt.Sprintf("{pair:%d}", i)
		if j, ok := want[int(topology.Slot([]byte(tag)))]; ok && tags[j] == "" {
			tags[j] = tag
			found++
		}
	}
	return tags
}

// probePairs runs MGET tag+"a" tag+"b" over the pairs from 4 clients until stopped, and checks every reply
// is [i, nil]: the reply Redis gives, whatever the slot's migration state.
func probePairs(t *testing.T, addr string, pairs []string) (stop func() (probes int, wrong []string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	var wrong []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := plainClients(addr)().(*redis.Client)
			defer c.Close()
			for i := w % len(pairs); ctx.Err() == nil; i = (i + 4) % len(pairs) {
				vals, err := c.MGet(context.Background(), pairs[i]+"a", pairs[i]+"b").Result()
				mu.Lock()
				n++
				if err != nil || len(vals) != 2 || vals[0] != strconv.Itoa(i) || vals[1] != nil {
					wrong = append(wrong, fmt.Sprintf("MGET %sa %sb = %q, %v", pairs[i], pairs[i], vals, err))
				}
				mu.Unlock()
			}
		}()
	}
	var once sync.Once
	stop = func() (int, []string) {
		once.Do(func() { cancel(); wg.Wait() })
		mu.Lock()
		defer mu.Unlock()
		return n, wrong
	}
	t.Cleanup(func() { stop() })
	return stop
}

// readBack reads every key back through c and fails t for each that does not hold its value.
func readBack(t *testing.T, c *redis.Client, keys, values []string) {
	t.Helper()
	ctx := context.Background()
	wrong := 0
	for from := 0; from < len(keys); from += 5000 {
		pipe := c.Pipeline()
		for _, k := range keys[from:min(from+5000, len(keys))] {
			pipe.Get(ctx, k)
		}
		cmds, _ := pipe.Exec(ctx)
		for j, cmd := range cmds {
			got, err := cmd.(*redis.StringCmd).Result()
			if want := values[from+j]; err != nil || got != want {
				if wrong++; wrong <= 5 {
					t.Errorf("%s = %q, %v after the reshard, want %q", keys[from+j], got, err, want)
				}
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d preloaded keys did not read back", wrong, len(keys))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
