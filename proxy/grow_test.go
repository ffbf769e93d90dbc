package proxy_test

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

// TestGrowAndShrink: add a fourth master and a replica for it, rebalance onto it, then move all its slots
// away and del-node both, all with redis-cli --cluster while 50 clients run: zero errors; the proxy opens
// connections to the new node and closes every connection to the removed ones.
func TestGrowAndShrink(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { growAndShrink(t, tg) })
	}
}

func growAndShrink(t *testing.T, tg target) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	ctx := context.Background()
	seed := cl.Nodes[0].Addr
	cli := func(args ...string) {
		t.Helper()
		out, err := exec.Command("redis-cli", append([]string{"--cluster"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli --cluster %v: %v\n%s", args, err, tail(string(out), 40))
		}
	}
	newNode := func() *redistest.Server {
		return redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(redistest.FreePort(t)))
	}
	master, replica := newNode(), newNode()
	stop := startLoadWith(t, clientsFor(tg, addr, cl), "gs")
	start := time.Now()

	cli("add-node", master.Addr, seed)
	masterID, _ := master.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	eventually(t, 10*time.Second, "the new master joins", func() bool {
		info, _ := master.Client(t).ClusterInfo(ctx).Result()
		return containsAll(info, "cluster_state:ok", "cluster_known_nodes:7")
	})
	// add-node --cluster-slave races gossip (the newcomer may not know the new master yet: "Unknown node"),
	// so the replica joins empty and replicates once it knows its master.
	cli("add-node", replica.Addr, seed)
	eventually(t, 10*time.Second, "the new replica learns the new master", func() bool {
		nodes, _ := replica.Client(t).ClusterNodes(ctx).Result()
		return strings.Contains(nodes, masterID)
	})
	if err := replica.Client(t).Do(ctx, "CLUSTER", "REPLICATE", masterID).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the new replica joins", func() bool {
		info, _ := replica.Client(t).ClusterInfo(ctx).Result()
		return containsAll(info, "cluster_state:ok", "cluster_known_nodes:8") && !isMaster(replica)
	})
	// Every node must know the newcomers before slots move to them ("I don't know about node ...").
	eventually(t, 20*time.Second, "every node knows the new nodes", func() bool {
		for _, n := range append([]*redistest.Server{master, replica}, cl.Nodes...) {
			info, _ := n.Client(t).ClusterInfo(ctx).Result()
			if !containsAll(info, "cluster_state:ok", "cluster_known_nodes:8") {
				return false
			}
		}
		return true
	})
	cli("rebalance", seed, "--cluster-use-empty-masters", "--cluster-pipeline", "100")
	grown := time.Now()
	agree(t, seed)
	eventually(t, 15*time.Second, "the proxy connects to the new master", func() bool {
		if !tg.proxy {
			return true
		}
		srv.Topology().RequestRefresh()
		return srv.BackendConns()[master.Addr] > 0
	})
	owned := 0
	slots, err := master.Client(t).ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range slots {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == master.Addr {
			owned += int(r.End-r.Start) + 1
		}
	}
	s := snapshotOf(srv)
	if owned == 0 {
		t.Fatal("rebalance gave the new master no slots")
	}
	other := s.Nodes[s.Shards[s.Slots[firstSlot(s, 0)]].Master].Addr
	if other == master.Addr {
		other = cl.Masters()[0].Addr
	}
	otherID, _ := cl.Node(other).Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	cli("reshard", seed, "--cluster-from", masterID, "--cluster-to", otherID, "--cluster-slots",
		strconv.Itoa(owned), "--cluster-yes", "--cluster-pipeline", "100")
	agree(t, seed)
	replicaID, _ := replica.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	cli("del-node", seed, replicaID)
	cli("del-node", seed, masterID)
	shrunk := time.Now()
	eventually(t, 20*time.Second, "the proxy closes every connection to the removed nodes", func() bool {
		if !tg.proxy {
			return true
		}
		conns := srv.BackendConns()
		return conns[master.Addr] == 0 && conns[replica.Addr] == 0
	})
	closed := time.Now()
	time.Sleep(time.Second)
	res := stop()
	all := res.Window(time.Time{}, time.Time{})
	report(t, "add master + replica, rebalance, drain, del-node", tg.name, res.Window(start, closed), res, nil)
	t.Logf("%s: grow: %v (new master got %d slots); shrink and del-node: %v; connections to removed nodes gone %v "+
		"after del-node; whole run: %v; lost writes %d, counter mismatches %d; connections now %v", tg.name,
		grown.Sub(start).Round(time.Millisecond), owned, shrunk.Sub(grown).Round(time.Millisecond),
		closed.Sub(shrunk).Round(time.Millisecond), all, res.LostWrites, res.CounterMismatch, srv.BackendConns())
	if !tg.proxy {
		return
	}
	if all.Errors != 0 {
		t.Errorf("%d client-visible errors: %v", all.Errors, all.ErrorSamples)
	}
	latencyWithin(t, res.Window(start, closed), 250*time.Millisecond, 3*time.Second) // README: p99 49 ms, max 543 ms
	requireIntact(t, res, nil)
}

// agree waits until every node has the same view of the slots: redis-cli refuses to reshard ("Nodes don't
// agree about configuration!") while the last SETSLOTs are still being gossiped.
func agree(t *testing.T, seed string) {
	t.Helper()
	eventually(t, 20*time.Second, "every node agrees on the slots", func() bool {
		return exec.Command("redis-cli", "--cluster", "check", seed).Run() == nil
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
