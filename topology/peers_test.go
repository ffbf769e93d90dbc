package topology

import (
	"log/slog"
	"net"
	"strconv"
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
	if n := ps[0].Stats().Leaves.Load(); n != 1 {
		t.Errorf("%d leaves counted, want 1", n)
	}
	for _, p := range []*Peers{ps[0], ps[2]} {
		if alive, dead := p.MemberCounts(); alive != 2 || dead != 1 {
			t.Errorf("%s counts %d alive, %d dead; want 2 and 1 (the one that left is not dead)", p.Name(), alive, dead)
		}
		if n := p.Stats().Deaths.Load(); n != 1 {
			t.Errorf("%s counted %d deaths, want 1", p.Name(), n)
		}
	}
}

// gatedTopo is a fakeTopo that takes a poll gate, as a Manager does.
type gatedTopo struct {
	fakeTopo
	gate   func() bool
	polled func(*Snapshot)
}

func (g *gatedTopo) SetPollGate(f func() bool) { g.gate = f }
func (g *gatedTopo) OnPoll(f func(*Snapshot))  { g.polled = f }

// TestPeersOnePoller: with a refresh interval, the member with the least name polls and the others skip
// their periodic rounds while its hints come; when they stop coming for two intervals, each polls again.
func TestPeersOnePoller(t *testing.T) {
	const interval = 300 * time.Millisecond
	var ps []*Peers
	var topos []*gatedTopo
	for i, name := range []string{"b", "a", "c"} {
		g := &gatedTopo{}
		g.snap.Store(oneShardMap("10.0.0.1:7000", 5))
		cfg := PeersConfig{Bind: "127.0.0.1:0", Profile: "local", Logger: slog.New(slog.DiscardHandler),
			Name: name, RefreshInterval: interval}
		if i > 0 {
			cfg.Join = []string{ps[0].Addr()}
		}
		p, err := StartPeers(cfg, g)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(100 * time.Millisecond) })
		ps, topos = append(ps, p), append(topos, g)
	}
	waitFor(t, 5*time.Second, "3 members", func() bool {
		return ps[0].Members() == 3 && ps[1].Members() == 3 && ps[2].Members() == 3
	})
	for _, p := range ps {
		if got := p.Poller(); got != "a" {
			t.Fatalf("%s says the poller is %q, want a", p.Name(), got)
		}
	}
	if !ps[1].ShouldPoll() {
		t.Error("the poller would skip its own rounds")
	}
	// The poller's rounds: each tells the others.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
				topos[1].polled(topos[1].Snapshot())
			}
		}
	}()
	waitFor(t, 3*time.Second, "b and c leave polling to a", func() bool {
		return !ps[0].ShouldPoll() && !ps[2].ShouldPoll()
	})
	for range 10 {
		time.Sleep(interval / 2)
		if ps[0].ShouldPoll() || ps[2].ShouldPoll() {
			t.Fatal("a non-poller would poll while the poller's hints come")
		}
	}
	close(stop)
	<-done
	d := waitFor(t, 3*time.Second, "b and c poll again", func() bool { return ps[0].ShouldPoll() && ps[2].ShouldPoll() })
	t.Logf("without the poller's hints, the others poll again after %v (interval %v)", d, interval)
	// The poller leaves: the next least name takes over.
	ps[1].Close(time.Second)
	waitFor(t, 3*time.Second, "b is the poller", func() bool { return ps[0].Poller() == "b" && ps[2].Poller() == "b" })
}

// TestPeersFacadeMembers: every member learns the others' client addresses; one without an address is not
// in the facade.
func TestPeersFacadeMembers(t *testing.T) {
	var ps []*Peers
	for i, client := range []string{"127.0.0.1:7777", "10.1.2.3:7778", ""} {
		cfg := PeersConfig{Bind: "127.0.0.1:0", Profile: "local", Logger: slog.New(slog.DiscardHandler),
			ClientAddr: client}
		if i > 0 {
			cfg.Join = []string{ps[0].Addr()}
		}
		p, err := StartPeers(cfg, &fakeTopo{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(100 * time.Millisecond) })
		ps = append(ps, p)
	}
	for _, p := range ps {
		waitFor(t, 5*time.Second, "two facade members", func() bool { return len(p.FacadeMembers()) == 2 })
		got := map[string]string{}
		for _, m := range p.FacadeMembers() {
			got[m.Name] = net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
			if m.Self != (m.Name == p.Name()) {
				t.Errorf("%s: member %s marked self %v", p.Name(), m.Name, m.Self)
			}
			if _, port, _ := net.SplitHostPort(map[string]string{ps[0].Name(): ps[0].Addr(),
				ps[1].Name(): ps[1].Addr()}[m.Name]); strconv.Itoa(m.BusPort) != port {
				t.Errorf("%s: member %s bus port %d, want %s", p.Name(), m.Name, m.BusPort, port)
			}
		}
		if got[ps[0].Name()] != "127.0.0.1:7777" || got[ps[1].Name()] != "10.1.2.3:7778" {
			t.Errorf("%s sees %v", p.Name(), got)
		}
	}
	if _, err := StartPeers(PeersConfig{Bind: "127.0.0.1:0", ClientAddr: "nohost"}, &fakeTopo{}); err == nil {
		t.Error("a client address without a port was taken")
	}
}
