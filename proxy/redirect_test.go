package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/topology"
)

// TestRedirectsAbsorbed moves one slot by hand, the way redis-cli --cluster reshard does, while the proxy keeps
// its old map: ASK (key already moved), TRYAGAIN (multi-key request split across source and target) and, after
// the move, MOVED are all resolved inside the proxy.
func TestRedirectsAbsorbed(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, srv := startProxyOpt(t, cl.Addrs()[:1], false, func(c *proxy.Config) {
		c.RefreshInterval = proxy.Duration(time.Hour)
	})
	ctx := context.Background()
	px := newClient(addr)
	defer px.Close()

	k1, k2 := "rd:{tag}1", "rd:{tag}2"
	slot := int(topology.Slot([]byte(k1)))
	if err := px.MSet(ctx, k1, "v1", k2, "v2").Err(); err != nil {
		t.Fatal(err)
	}
	var src, dst *redistest.Server
	ids := map[*redistest.Server]string{}
	for _, n := range cl.Nodes {
		c := n.Client(t)
		id, err := c.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = id
		if cnt, _ := c.ClusterCountKeysInSlot(ctx, slot).Result(); cnt == 2 {
			src = n
		} else if dst == nil {
			dst = n
		}
	}
	if src == nil || dst == nil {
		t.Fatal("cannot find the slot's owner")
	}
	sc, dc := src.Client(t), dst.Client(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dc.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]).Err())
	must(sc.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]).Err())
	must(sc.Do(ctx, "MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS", k1).Err())

	// k1 is at the target now: the source answers ASK.
	if v, err := px.Get(ctx, k1).Result(); err != nil || v != "v1" {
		t.Fatalf("GET of a migrated key = %q, %v", v, err)
	}
	if v, err := px.Get(ctx, k2).Result(); err != nil || v != "v2" {
		t.Fatalf("GET of a not yet migrated key = %q, %v", v, err)
	}
	// MGET k1 k2 gets TRYAGAIN until the migration ends; finish it shortly.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = sc.Do(ctx, "MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS", k2).Err()
		for _, n := range []*redistest.Server{dst, src} {
			_ = n.Client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]).Err()
		}
		for _, n := range cl.Nodes {
			if n != src && n != dst {
				_ = n.Client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]).Err()
			}
		}
	}()
	start := time.Now()
	vals, err := px.MGet(ctx, k1, k2).Result()
	if err != nil || fmt.Sprint(vals) != "[v1 v2]" {
		t.Fatalf("MGET during migration = %v, %v", vals, err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("MGET answered after %v, before the migration ended: was TRYAGAIN seen at all?", waited)
	}
	// The slot has moved: the proxy's old map sends requests to the source, which answers MOVED.
	for i := 0; i < 10; i++ {
		k, want := k1, "v1"
		if i%2 == 1 {
			k, want = k2, "v2"
		}
		if v, err := px.Get(ctx, k).Result(); err != nil || v != want {
			t.Fatalf("GET %s after the move = %q, %v; want %q", k, v, err, want)
		}
	}
	if err := px.Incr(ctx, "rd:{tag}n").Err(); err != nil {
		t.Fatal(err)
	}
	// One event loop per CPU, one connection per node each: never more.
	perNode := srv.BackendConns()
	for node, n := range perNode {
		if n > 2 {
			t.Errorf("%d connections to %s", n, node)
		}
	}
	st := srv.BackendStats()
	if st.Ask == 0 || st.TryAgain == 0 || st.Moved == 0 || st.Failed != 0 {
		t.Errorf("backend stats %+v: want ASK, TRYAGAIN and MOVED absorbed, nothing failed", st)
	}
	n, _ := dc.Get(ctx, "rd:{tag}n").Result()
	if v, _ := strconv.Atoi(n); v != 1 {
		t.Errorf("the counter is %q on the new owner", n)
	}
}
