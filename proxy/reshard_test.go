package proxy_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/topology"
)

// TestLiveReshard moves 3,000 slots holding over 100,000 keys with redis-cli --cluster reshard while 50
// clients run, multi-key MGET/MSET on keys of migrating slots included (ASK, TRYAGAIN): zero client-visible
// errors, every acknowledged write reads back, every counter equals its acknowledged INCRs.
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
	pipe := c.Pipeline()
	preloaded := 0
	for i := 0; preloaded < 110000; i++ {
		k := fmt.Sprintf("pre:%d", i)
		if s := int(topology.Slot([]byte(k))); s >= lo && s < lo+3000 {
			pipe.Set(ctx, k, i, 0)
			if preloaded++; preloaded%5000 == 0 {
				if _, err := pipe.Exec(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	dstBefore, _ := dst.Client(t).DBSize(ctx).Result()

	srcID, _ := src.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ := dst.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	stop := startLoadWith(t, clientsFor(tg, addr, cl), "rs")
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

	dstAfter, _ := dst.Client(t).DBSize(ctx).Result()
	moved := dstAfter - dstBefore
	during := res.Window(start, done)
	all := res.Window(time.Time{}, time.Time{})
	st := srv.BackendStats()
	report(t, "live reshard (3,000 slots, 110k keys)", tg.name, during, res)
	t.Logf("%s: reshard of 3000 slots took %v and moved %d keys; during: %v; whole run: %v; lost writes %d, "+
		"counter mismatches %d; absorbed: MOVED %d, ASK %d, TRYAGAIN %d", tg.name, done.Sub(start).Round(time.Millisecond),
		moved, during, all, res.LostWrites, res.CounterMismatch, st.Moved, st.Ask, st.TryAgain)
	if moved < 100000 {
		t.Errorf("only %d keys moved", moved)
	}
	if !tg.proxy {
		return
	}
	if all.Errors != 0 {
		t.Errorf("%d client-visible errors: %v", all.Errors, all.ErrorSamples)
	}
	if res.LostWrites != 0 || res.CounterMismatch != 0 || len(res.CheckErrors) != 0 {
		t.Errorf("lost writes %d, counter mismatches %d: %v", res.LostWrites, res.CounterMismatch, res.CheckErrors)
	}
	if st.Ask == 0 || st.Moved == 0 {
		t.Errorf("the reshard produced no ASK (%d) or MOVED (%d) at the proxy: the test proves nothing", st.Ask, st.Moved)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
