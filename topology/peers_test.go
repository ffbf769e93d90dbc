package topology

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
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
	t.Logf("a crashed peer is gone after %v", d)
	// A member gone without a bye counts as dead byeWait later (its bye may still be on its way).
	waitFor(t, 5*time.Second, "the crashed peer counted dead", func() bool {
		return ps[0].Stats().Deaths.Load() > 0 && ps[2].Stats().Deaths.Load() > 0
	})
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

// TestByeAfterLeave: memberlist's word that a member went and the member's bye race (the bye comes over TCP,
// the leave by gossip). A bye that comes second, within byeWait, still makes it a leave; none makes it a death
// byeWait later; a member that comes back before its bye had died.
func TestByeAfterLeave(t *testing.T) {
	ps, _ := startTestPeers(t, 1, "lan")
	p := ps[0]
	node := func(name string) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 9), Port: 1}
	}
	bye := func(name string) { p.NotifyMsg(append([]byte{byeMagic}, name...)) }
	counts := func(what string, leaves, deaths uint64, dead int) {
		t.Helper()
		if l, d := p.Stats().Leaves.Load(), p.Stats().Deaths.Load(); l != leaves || d != deaths {
			t.Errorf("%s: %d leaves and %d deaths counted, want %d and %d", what, l, d, leaves, deaths)
		}
		if _, n := p.MemberCounts(); n != dead {
			t.Errorf("%s: %d counted dead, want %d", what, n, dead)
		}
	}

	p.NotifyJoin(node("first"))
	bye("first")
	p.NotifyLeave(node("first"))
	counts("a bye, then the leave", 1, 0, 0)

	p.NotifyJoin(node("second"))
	p.NotifyLeave(node("second"))
	counts("the leave, no bye yet", 1, 0, 0)
	bye("second")
	counts("the leave, then its bye", 2, 0, 0)

	p.NotifyJoin(node("third"))
	p.NotifyLeave(node("third"))
	waitFor(t, 3*byeWait, "a member gone without a bye counted dead", func() bool { return p.Stats().Deaths.Load() == 1 })
	counts("the leave, no bye", 2, 1, 1)
	bye("third") // too late: it was dead
	counts("a bye after the verdict", 2, 1, 1)

	p.NotifyJoin(node("fourth"))
	p.NotifyLeave(node("fourth"))
	p.NotifyJoin(node("fourth"))
	counts("gone and back without a bye", 2, 2, 1)
	time.Sleep(byeWait + byeWait/2)
	counts("after byeWait", 2, 2, 1)
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

// startFacadePeers starts one member per client address ("" for none), each joining the first.
func startFacadePeers(t *testing.T, clients ...string) []*Peers {
	var ps []*Peers
	for i, client := range clients {
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
	return ps
}

// clientPort stands for a proxy's client port: it accepts connections and holds them until told.
type clientPort struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func listenClientPort(t *testing.T) *clientPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &clientPort{ln: ln}
	t.Cleanup(func() { cp.close(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cp.mu.Lock()
			cp.conns = append(cp.conns, c)
			cp.mu.Unlock()
		}
	}()
	return cp
}

// close closes the held connections, and the listener too when all is set (the process died).
func (cp *clientPort) close(all bool) {
	if all {
		_ = cp.ln.Close()
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.conns {
		_ = c.Close()
	}
	cp.conns = nil
}

func (cp *clientPort) held() int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.conns)
}

// TestPeersFacadeMembers: every member learns the others' client addresses, and one without an address is
// not in the facade. Each holds a link to the others' client ports: a member that closes its links but
// still accepts stays in the facade; one whose port refuses (its process died) is out within a link dial,
// long before memberlist would find it dead.
func TestPeersFacadeMembers(t *testing.T) {
	ports := []*clientPort{listenClientPort(t), listenClientPort(t)}
	ps := startFacadePeers(t, ports[0].ln.Addr().String(), ports[1].ln.Addr().String(), "")
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
		if got[ps[0].Name()] != ports[0].ln.Addr().String() || got[ps[1].Name()] != ports[1].ln.Addr().String() {
			t.Errorf("%s sees %v", p.Name(), got)
		}
	}
	if _, err := StartPeers(PeersConfig{Bind: "127.0.0.1:0", ClientAddr: "nohost"}, &fakeTopo{}); err == nil {
		t.Error("a client address without a port was taken")
	}
	// The links: ps[1] links to port 0 and ps[0] to port 1 (ps[2] has no address, so no links).
	waitFor(t, 3*time.Second, "links held", func() bool { return ports[0].held() == 1 && ports[1].held() == 1 })
	ports[1].close(false)
	waitFor(t, 3*time.Second, "a closed link dialled again", func() bool { return ports[1].held() == 1 })
	if n := len(ps[0].FacadeMembers()); n != 2 {
		t.Errorf("a member that closed its link but accepts is out of the facade: %d members", n)
	}
	ports[0].close(true)
	d := waitFor(t, 3*time.Second, "a dead client port out of the facade", func() bool {
		return len(ps[1].FacadeMembers()) == 1
	})
	t.Logf("a member whose client port closed is out of the facade after %v", d)
	if ps[1].Members() != 3 {
		t.Errorf("the member is gone from memberlist too (%d members): the test shows nothing", ps[1].Members())
	}
}

// TestPeersSecretRotation: mid-rotation, a proxy sending with the old secret and accepting the new one and a
// proxy sending with the new one and accepting the old one form one fleet and hear each other's hints; a
// proxy with another secret cannot join.
func TestPeersSecretRotation(t *testing.T) {
	const oldKey, newKey = "0123456789abcdef", "fedcba9876543210"
	start := func(secret string, accept []string, join ...string) (*Peers, *fakeTopo, error) {
		f := &fakeTopo{}
		f.snap.Store(oneShardMap("10.0.0.1:7000", 5))
		p, err := StartPeers(PeersConfig{Bind: "127.0.0.1:0", Profile: "local", Logger: slog.New(slog.DiscardHandler),
			Secret: secret, OldSecrets: accept, Join: join}, f)
		if err == nil {
			t.Cleanup(func() { p.Close(100 * time.Millisecond) })
		}
		return p, f, err
	}
	a, fa, err := start(oldKey, []string{newKey})
	if err != nil {
		t.Fatal(err)
	}
	b, fb, err := start(newKey, []string{oldKey}, a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "both see 2 members", func() bool { return a.Members() == 2 && b.Members() == 2 })
	fa.set(oneShardMap("10.0.0.2:7000", 6))
	waitFor(t, 3*time.Second, "b hears a's hint", func() bool { return fb.requests.Load() > 0 })
	fb.set(oneShardMap("10.0.0.3:7000", 7))
	waitFor(t, 3*time.Second, "a hears b's hint", func() bool { return fa.requests.Load() > 0 })

	c, _, _ := start("0123456789abcdeX", nil)
	if c != nil {
		if _, err := c.ml.Join([]string{a.Addr()}); err == nil {
			t.Error("a proxy with another secret joined")
		}
	}
	if _, _, err := start("", []string{oldKey}); err == nil {
		t.Error("accepted secrets without a secret were taken")
	}
}

// TestLinksBackOff: a member whose client port accepts and closes every connection at once (a proxy at
// max_clients) is dialled about once a tick, not in a loop, and stays in the facade.
func TestLinksBackOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_, _ = c.Write([]byte("-ERR max number of clients reached\r\n"))
			_ = c.Close()
		}
	}()
	other := listenClientPort(t)
	ps := startFacadePeers(t, ln.Addr().String(), other.ln.Addr().String())
	time.Sleep(3 * time.Second)
	if n := accepts.Load(); n < 2 || n > 8 {
		t.Errorf("%d dials in 3 s to a port that closes every connection, want a few", n)
	}
	if n := len(ps[1].FacadeMembers()); n != 2 {
		t.Errorf("a member that accepts connections is out of the facade: %d members", n)
	}
}
