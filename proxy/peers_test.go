package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// TestPeersLearnFailoverTogether: three proxies over one 3+3 cluster, and a master SIGKILLed while only proxy
// A has clients on its slots. A finds the promoted replica through its own failing requests; with gossip,
// B and C re-read the cluster on A's hint and route to it within 250 ms of A; without, they wait for their
// periodic refresh (3 s here).
func TestPeersLearnFailoverTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, gossip := range []bool{true, false} {
		name := "gossip off"
		if gossip {
			name = "gossip on"
		}
		t.Run(name, func(t *testing.T) {
			cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
			fleet := startFleet(t, cl.Addrs(), 3, gossip, func(c *proxy.Config) {
				c.RefreshInterval = proxy.Duration(3 * time.Second)
			})
			srvs := []*proxy.Server{fleet[0].srv, fleet[1].srv, fleet[2].srv}
			addrs := []string{fleet[0].addr, fleet[1].addr, fleet[2].addr}
			if gossip {
				info := string(dialRaw(t, addrs[1]).do("INFO", "proxy"))
				if infoField(info, "proxy_peers_members") != "3" || infoField(info, "proxy_peers_name") != fleet[1].peers.Name() {
					t.Errorf("INFO proxy without the fleet: %q", info)
				}
			}
			snap := snapshotOf(srvs[0])
			master := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
			replica := snap.Nodes[snap.Shards[0].Replicas[0]].Addr
			slot := firstSlot(snap, 0)
			// Traffic for the shard through proxy A only.
			stop := make(chan struct{})
			go func() {
				c := newClient(addrs[0])
				defer c.Close()
				k := keyInShard(snap, 0)
				for {
					select {
					case <-stop:
						return
					default:
						_ = c.Set(context.Background(), k, "v", 0).Err()
					}
				}
			}()
			defer close(stop)
			time.Sleep(200 * time.Millisecond)
			master.Kill()
			learnt := make([]time.Time, 3)
			eventually(t, 30*time.Second, "every proxy routes to the promoted replica", func() bool {
				done := true
				for i, srv := range srvs {
					if s := snapshotOf(srv); learnt[i].IsZero() && s.Nodes[s.MasterOf(uint16(slot))].Addr == replica {
						learnt[i] = time.Now()
					}
					done = done && !learnt[i].IsZero()
				}
				return done
			})
			first := learnt[0]
			for _, at := range learnt[1:] {
				if at.Before(first) {
					first = at
				}
			}
			lagB, lagC := learnt[1].Sub(first), learnt[2].Sub(first)
			t.Logf("%s: proxy A learnt the new master at +0 (first %v), B at +%v, C at +%v", name,
				learnt[0].Sub(first), lagB, lagC)
			if gossip && (lagB > 250*time.Millisecond || lagC > 250*time.Millisecond) {
				t.Errorf("with gossip, B and C learnt %v and %v after the first proxy, want within 250 ms", lagB, lagC)
			}
		})
	}
}
