package topology

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTopo is a Refresher whose map the test sets, counting refresh requests.
type fakeTopo struct {
	snap     atomic.Pointer[Snapshot]
	requests atomic.Int64
	mu       sync.Mutex
	subs     []func(*Snapshot)
}

func (f *fakeTopo) Snapshot() *Snapshot { return f.snap.Load() }
func (f *fakeTopo) RequestRefresh()     { f.requests.Add(1) }
func (f *fakeTopo) Subscribe(fn func(*Snapshot)) {
	f.mu.Lock()
	f.subs = append(f.subs, fn)
	f.mu.Unlock()
}
func (f *fakeTopo) set(s *Snapshot) {
	f.snap.Store(s)
	f.mu.Lock()
	subs := f.subs
	f.mu.Unlock()
	for _, fn := range subs {
		fn(s)
	}
}

func oneShardMap(master string, epoch uint64) *Snapshot {
	s := &Snapshot{Shards: []Shard{{Master: 0}}, Nodes: []Node{{Addr: master}}, Epoch: epoch}
	return s
}

func startTestPeers(t *testing.T, n int, profile string) ([]*Peers, []*fakeTopo) {
	t.Helper()
	var ps []*Peers
	var topos []*fakeTopo
	for i := range n {
		f := &fakeTopo{}
		f.snap.Store(oneShardMap("10.0.0.1:7000", 5))
		cfg := PeersConfig{Bind: "127.0.0.1:0", Profile: profile, Logger: slog.New(slog.DiscardHandler),
			Secret: "0123456789abcdef"}
		if i > 0 {
			cfg.Join = []string{ps[0].Addr()}
		}
		p, err := StartPeers(cfg, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(100 * time.Millisecond) })
		ps, topos = append(ps, p), append(topos, f)
	}
	return ps, topos
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
	return 0
}

// TestPeersHints: three proxies join; a map change on one makes the other two refresh from the cluster
// within a few gossip intervals; a hint they already have, or that tells of the map they have, does not.
func TestPeersHints(t *testing.T) {
	ps, topos := startTestPeers(t, 3, "local")
	waitFor(t, 5*time.Second, "every proxy sees 3 members", func() bool {
		return ps[0].Members() == 3 && ps[1].Members() == 3 && ps[2].Members() == 3
	})
	time.Sleep(300 * time.Millisecond) // the join's own hints settle
	base := []int64{topos[1].requests.Load(), topos[2].requests.Load()}
	topos[0].set(oneShardMap("10.0.0.2:7000", 6)) // a failover proxy 0 saw first
	d := waitFor(t, 3*time.Second, "the others asked to refresh", func() bool {
		return topos[1].requests.Load() > base[0] && topos[2].requests.Load() > base[1]
	})
	t.Logf("the other proxies asked to refresh %v after the change", d)
	// They refresh and reach the same map: their own announcements must not send anyone refreshing again.
	for _, f := range topos[1:] {
		f.set(oneShardMap("10.0.0.2:7000", 6))
	}
	time.Sleep(500 * time.Millisecond)
	after := []int64{topos[0].requests.Load(), topos[1].requests.Load(), topos[2].requests.Load()}
	time.Sleep(time.Second)
	for i, f := range topos {
		if n := f.requests.Load(); n != after[i] {
			t.Errorf("proxy %d asked for %d more refreshes with every map equal", i, n-after[i])
		}
	}
}

// TestPeersBogusHint: a hint with a wrong digest or a future epoch makes a proxy re-read the cluster, and
// changes nothing else: its map stays what it read itself.
func TestPeersBogusHint(t *testing.T) {
	ps, topos := startTestPeers(t, 2, "local")
	waitFor(t, 5*time.Second, "both see 2 members", func() bool { return ps[0].Members() == 2 && ps[1].Members() == 2 })
	time.Sleep(300 * time.Millisecond)
	mine := topos[1].Snapshot()
	for i, h := range []hint{
		{origin: "liar", seq: 1, epoch: 5, digest: 12345},   // same epoch, other routing
		{origin: "liar", seq: 2, epoch: 1 << 40, digest: 1}, // a future epoch
		{origin: "liar", seq: 2, epoch: 1 << 41, digest: 1}, // the same sequence again: ignored
	} {
		before := topos[1].requests.Load()
		ps[1].NotifyMsg(h.encode())
		want := before + 1
		if i == 2 {
			want = before
		}
		if n := topos[1].requests.Load(); n != want {
			t.Errorf("hint %+v: %d refresh requests, want %d", h, n-before, want-before)
		}
		if topos[1].Snapshot() != mine {
			t.Error("a peer's hint changed the map")
		}
	}
	for _, b := range [][]byte{nil, {hintMagic}, []byte("garbage that is long enough to be a hint...")} {
		ps[1].NotifyMsg(b) // must not panic
	}
}

// TestPeersLeaveAndFail: a proxy that leaves is gone from the others at once; one that stops answering is
// found dead by memberlist's failure detector (LAN timing: suspicion 4 probe intervals once others confirm).
func TestPeersLeaveAndFail(t *testing.T) {
	ps, _ := startTestPeers(t, 4, "lan")
	waitFor(t, 5*time.Second, "4 members", func() bool {
		return ps[0].Members() == 4 && ps[2].Members() == 4 && ps[3].Members() == 4
	})
	ps[1].Close(time.Second)
	d := waitFor(t, 3*time.Second, "a left peer gone", func() bool { return ps[0].Members() == 3 && ps[2].Members() == 3 })
	t.Logf("a peer that left is gone after %v", d)
	ps[3].stop()
	d = waitFor(t, 30*time.Second, "a crashed peer dead", func() bool { return ps[0].Members() == 2 && ps[2].Members() == 2 })
	t.Logf("a crashed peer is dead after %v", d)
	if n := ps[0].Stats().Leaves.Load(); n < 2 {
		t.Errorf("%d leaves counted, want 2", n)
	}
}
