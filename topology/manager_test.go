package topology

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotproxy/slotproxy/internal/redistest"
)

// testLogger sends the Manager's log to t.Log and keeps a copy to search.
type testLogger struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLogger) {
	w := &testLogger{t: t}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

func (w *testLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	w.mu.Unlock()
	defer func() { _ = recover() }() // a line logged after the test ended must not panic
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *testLogger) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains(w.b.String(), s)
}

func startManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger, _ = newTestLogger(t)
	}
	m := NewManager(cfg)
	m.Start()
	t.Cleanup(m.Close)
	return m
}

func waitReady(t *testing.T, m *Manager, timeout time.Duration) *Snapshot {
	t.Helper()
	select {
	case <-m.Ready():
	case <-time.After(timeout):
		t.Fatalf("no slot map after %v (stats %+v)", timeout, m.Stats())
	}
	s := m.Snapshot()
	if s == nil {
		t.Fatal("Ready is closed but Snapshot is nil")
	}
	return s
}

// checkAgainstServer compares a snapshot with go-redis's reading of CLUSTER SLOTS from addr.
func checkAgainstServer(t *testing.T, s *Snapshot, addr string) error {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ranges, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		return err
	}
	for _, r := range ranges {
		for slot := r.Start; slot <= r.End; slot++ {
			sh := s.Shards[s.Slots[slot]]
			if got := s.Nodes[sh.Master].Addr; got != r.Nodes[0].Addr {
				return fmt.Errorf("slot %d: snapshot says %s, %s says %s", slot, got, addr, r.Nodes[0].Addr)
			}
		}
	}
	return nil
}

func deadAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
}

// TestManagerCluster runs against one real 3+3 cluster: first map, stability, coalescing, periodic refresh,
// and a manual failover.
func TestManagerCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	// A dead seed first: the manager must move on to the next one.
	m := startManager(t, Config{Seeds: []string{deadAddr(t), cl.Nodes[4].Addr}, RefreshInterval: -1})
	first := waitReady(t, m, 10*time.Second)

	t.Run("first snapshot", func(t *testing.T) {
		s := first
		if s.Version != 1 || s.Epoch == 0 {
			t.Errorf("Version %d, Epoch %d; want 1 and > 0", s.Version, s.Epoch)
		}
		if len(s.Shards) != 3 || len(s.Nodes) != 6 {
			t.Fatalf("%d shards over %d nodes, want 3 over 6", len(s.Shards), len(s.Nodes))
		}
		var masters []string
		for _, n := range cl.Masters() {
			masters = append(masters, n.Addr)
		}
		if got := s.MasterAddrs(); !slices.Equal(got, masters) {
			t.Errorf("masters %v, the cluster says %v", got, masters)
		}
		for i, sh := range s.Shards {
			if len(sh.Replicas) != 1 {
				t.Errorf("shard %d has %d replicas, want 1", i, len(sh.Replicas))
			}
		}
		count := make([]int, len(s.Shards))
		for _, sh := range s.Slots {
			count[sh]++
		}
		if want := []int{5461, 5462, 5461}; !slices.Equal(count, want) {
			t.Errorf("slots per shard %v, want %v", count, want)
		}
		if err := checkAgainstServer(t, s, cl.Nodes[0].Addr); err != nil {
			t.Error(err)
		}
	})

	t.Run("same routing is not swapped", func(t *testing.T) {
		// Every refresh asks a random node; none of them may look like a change.
		for i := range 5 {
			before := m.Stats().Refreshes
			m.RequestRefresh()
			redistest.WaitFor(t, 5*time.Second, "refresh "+strconv.Itoa(i), func() error {
				if m.Stats().Refreshes == before {
					return fmt.Errorf("no refresh yet")
				}
				return nil
			})
		}
		if st := m.Stats(); st.Swaps != 1 || m.Snapshot() != first {
			t.Errorf("stats %+v: the map was swapped for the same routing", st)
		}
	})

	t.Run("requests are coalesced", func(t *testing.T) {
		time.Sleep(2 * defaultMinRefreshGap) // let the last refresh's gap pass
		before := m.Stats()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 250 {
					m.RequestRefresh()
				}
			})
		}
		wg.Wait()
		// One refresh starts at once and the rest wait for one more after the gap; give both time to end.
		redistest.WaitFor(t, 5*time.Second, "a refresh", func() error {
			if m.Stats().Refreshes == before.Refreshes {
				return fmt.Errorf("no refresh yet")
			}
			return nil
		})
		time.Sleep(5 * defaultMinRefreshGap)
		after := m.Stats()
		if n := after.Refreshes - before.Refreshes; n < 1 || n > 2 {
			t.Errorf("1000 RequestRefresh calls made %d refreshes, want 1 or 2", n)
		}
		if after.Requests-before.Requests != 1000 {
			t.Errorf("%d requests counted", after.Requests-before.Requests)
		}
	})

	t.Run("periodic refresh", func(t *testing.T) {
		p := startManager(t, Config{Seeds: cl.Addrs(), RefreshInterval: 50 * time.Millisecond})
		waitReady(t, p, 10*time.Second)
		redistest.WaitFor(t, 5*time.Second, "periodic refreshes", func() error {
			if st := p.Stats(); st.Refreshes < 4 || st.Swaps != 1 {
				return fmt.Errorf("stats %+v", st)
			}
			return nil
		})
	})

	t.Run("poll gate", func(t *testing.T) {
		// Periodic rounds ask the gate; requested ones do not; OnPoll hears every round that read a map.
		p := startManager(t, Config{Seeds: cl.Addrs(), RefreshInterval: 50 * time.Millisecond})
		waitReady(t, p, 10*time.Second)
		var polls atomic.Int64
		var open atomic.Bool
		p.OnPoll(func(s *Snapshot) {
			if s != nil {
				polls.Add(1)
			}
		})
		p.SetPollGate(open.Load)
		time.Sleep(100 * time.Millisecond) // a round that began before the gate ends
		before := p.Stats()
		time.Sleep(500 * time.Millisecond)
		mid := p.Stats()
		if n := mid.Refreshes - before.Refreshes; n != 0 || mid.Skipped-before.Skipped < 5 {
			t.Errorf("gate shut: %d rounds ran, %d skipped in 500 ms; want 0 and about 10", n, mid.Skipped-before.Skipped)
		}
		p.RequestRefresh()
		redistest.WaitFor(t, 5*time.Second, "a requested round past the gate", func() error {
			if p.Stats().Refreshes == mid.Refreshes || polls.Load() == 0 {
				return fmt.Errorf("stats %+v, %d polls heard", p.Stats(), polls.Load())
			}
			return nil
		})
		open.Store(true)
		redistest.WaitFor(t, 5*time.Second, "periodic rounds again", func() error {
			if st := p.Stats(); st.Refreshes < mid.Refreshes+5 || polls.Load() < 5 {
				return fmt.Errorf("stats %+v, %d polls heard", st, polls.Load())
			}
			return nil
		})
	})

	t.Run("manual failover", func(t *testing.T) {
		// A second manager that only refreshes periodically picks the failover up by itself.
		periodic := startManager(t, Config{Seeds: cl.Addrs(), RefreshInterval: 100 * time.Millisecond})
		waitReady(t, periodic, 10*time.Second)
		var (
			mu        sync.Mutex
			published []*Snapshot
		)
		m.Subscribe(func(s *Snapshot) {
			mu.Lock()
			published = append(published, s)
			mu.Unlock()
		})
		m.Subscribe(func(*Snapshot) { panic("a bad subscriber") }) // must not take the manager down

		before := m.Snapshot()
		oldMaster := before.Nodes[before.Shards[0].Master].Addr
		replica := before.Nodes[before.Shards[0].Replicas[0]].Addr
		if _, err := cl.Node(replica).Do("CLUSTER", "FAILOVER"); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 15*time.Second, "the promoted replica in the map", func() error {
			m.RequestRefresh()
			s := m.Snapshot()
			if got := s.Nodes[s.MasterOf(0)].Addr; got != replica {
				return fmt.Errorf("master of slot 0 is %s, want %s", got, replica)
			}
			return nil
		})
		s := m.Snapshot()
		if s.Version <= before.Version || s.Epoch <= before.Epoch {
			t.Errorf("version %d → %d, epoch %d → %d: want both to grow", before.Version, s.Version,
				before.Epoch, s.Epoch)
		}
		// The new master is what CLUSTER SLOTS says.
		redistest.WaitFor(t, 5*time.Second, "snapshot = CLUSTER SLOTS", func() error {
			return checkAgainstServer(t, m.Snapshot(), replica)
		})
		mu.Lock()
		if len(published) == 0 || published[len(published)-1] != m.Snapshot() {
			t.Errorf("subscriber saw %d snapshots, the last not the current one", len(published))
		}
		mu.Unlock()
		// The old master comes back as a replica of the new one once it has synced.
		redistest.WaitFor(t, 15*time.Second, "old master as replica", func() error {
			m.RequestRefresh()
			s := m.Snapshot()
			sh := s.Shards[s.Slots[0]]
			if len(sh.Replicas) != 1 || s.Nodes[sh.Replicas[0]].Addr != oldMaster {
				return fmt.Errorf("shard of slot 0: master %s, replicas %v", s.Nodes[sh.Master].Addr, sh.Replicas)
			}
			return nil
		})
		redistest.WaitFor(t, 5*time.Second, "periodic manager follows", func() error {
			s := periodic.Snapshot()
			if got := s.Nodes[s.MasterOf(0)].Addr; got != replica {
				return fmt.Errorf("master of slot 0 is %s", got)
			}
			return nil
		})
	})
}

// TestManagerSeedsDown: with no seed answering the manager keeps trying without a map; a half-assigned
// cluster is not taken; the full one is, as soon as it exists.
func TestManagerSeedsDown(t *testing.T) {
	t.Parallel()
	port := redistest.FreePort(t)
	seed := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	log, logged := newTestLogger(t)
	m := startManager(t, Config{Seeds: []string{deadAddr(t), seed}, RefreshInterval: time.Hour, Logger: log})
	redistest.WaitFor(t, 5*time.Second, "three attempts", func() error {
		if st := m.Stats(); st.Refreshes < 3 || st.Failures < 3 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if m.Snapshot() != nil {
		t.Fatal("a snapshot without any seed")
	}
	select {
	case <-m.Ready():
		t.Fatal("Ready without a map")
	default:
	}
	if !logged.contains("no seed answered CLUSTER SLOTS") {
		t.Error("no warning about the seeds")
	}
	m.RequestRefresh() // asking during the retry backoff is fine too

	srv := redistest.StartServerOnPort(t, port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	if _, err := srv.Do("CLUSTER", "ADDSLOTSRANGE", "0", "8191"); err != nil {
		t.Fatal(err)
	}
	before := m.Stats().Refreshes
	redistest.WaitFor(t, 10*time.Second, "two more attempts", func() error {
		if n := m.Stats().Refreshes; n < before+2 {
			return fmt.Errorf("%d attempts", n-before)
		}
		return nil
	})
	if m.Snapshot() != nil {
		t.Fatal("a map with half the slots unserved was taken")
	}
	if !logged.contains("slots 8192-16383 are not served") {
		t.Error("the warning does not name the gap")
	}
	if _, err := srv.Do("CLUSTER", "ADDSLOTSRANGE", "8192", "16383"); err != nil {
		t.Fatal(err)
	}
	s := waitReady(t, m, 10*time.Second)
	if len(s.Shards) != 1 || s.Nodes[s.Shards[0].Master].Addr != seed || s.Version != 1 {
		t.Errorf("map %+v, want one shard served by %s", s.Shards, seed)
	}
}

// TestManagerAuth: AUTH with a password and with an ACL user that may run CLUSTER SLOTS but not CLUSTER
// NODES (the epoch is then unknown).
func TestManagerAuth(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 1, Password: "s3cret"})
	n := cl.Nodes[0]
	if _, err := n.Do("ACL", "SETUSER", "topo", "on", ">topopw", "+cluster|slots", "+ping"); err != nil {
		t.Fatal(err)
	}

	s := waitReady(t, startManager(t, Config{Seeds: []string{n.Addr}, Password: "s3cret"}), 10*time.Second)
	if s.Epoch == 0 {
		t.Error("default user: epoch unknown")
	}
	s = waitReady(t, startManager(t, Config{Seeds: []string{n.Addr}, Username: "topo", Password: "topopw"}), 10*time.Second)
	if s.Epoch != 0 || len(s.Shards) != 1 {
		t.Errorf("restricted user: epoch %d, %d shards; want 0 and 1", s.Epoch, len(s.Shards))
	}

	log, logged := newTestLogger(t)
	bad := startManager(t, Config{Seeds: []string{n.Addr}, Password: "wrong", Logger: log})
	redistest.WaitFor(t, 5*time.Second, "a failed attempt", func() error {
		if bad.Stats().Failures == 0 {
			return fmt.Errorf("no failure yet")
		}
		return nil
	})
	if bad.Snapshot() != nil || !logged.contains("WRONGPASS") {
		t.Error("a wrong password was not reported")
	}
}

// TestManagerCloseInterruptsRefresh: Close does not wait for a node that never answers.
func TestManagerCloseInterruptsRefresh(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c // hold it open and say nothing
		}
	}()
	m := NewManager(Config{Seeds: []string{l.Addr().String()}, ReadTimeout: time.Minute})
	m.Start()
	var c net.Conn
	select {
	case c = <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the manager never connected")
	}
	start := time.Now()
	m.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a refresh hanging", d)
	}
	m.Close() // twice is fine

	idle := NewManager(Config{})
	idle.Close() // never started
	idle.Start() // after Close: nothing runs
	idle.Close()
}

// TestManagerKeepsItsConnection: periodic refreshes ask over one kept connection, and one the node closed
// is replaced without a failed round.
func TestManagerKeepsItsConnection(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 1})
	n := cl.Nodes[0]
	m := startManager(t, Config{Seeds: []string{n.Addr}, RefreshInterval: 20 * time.Millisecond})
	waitReady(t, m, 10*time.Second)
	// controlIDs are the ids of the node's clients whose last command is a refresh's.
	controlIDs := func() []string {
		list, err := n.DoString("CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for line := range strings.SplitSeq(strings.TrimSpace(list), "\n") {
			if strings.Contains(line, " cmd=cluster|") {
				ids = append(ids, strings.TrimPrefix(strings.Fields(line)[0], "id="))
			}
		}
		return ids
	}
	waitRounds := func(k uint64) {
		t.Helper()
		from := m.Stats().Refreshes
		redistest.WaitFor(t, 5*time.Second, "refresh rounds", func() error {
			if got := m.Stats().Refreshes - from; got < k {
				return fmt.Errorf("%d rounds", got)
			}
			return nil
		})
	}
	waitRounds(3)
	before := controlIDs()
	waitRounds(10)
	after := controlIDs()
	if len(before) != 1 || !slices.Equal(before, after) {
		t.Fatalf("control connections %v, then %v after 10 rounds; want the same one", before, after)
	}
	if _, err := n.Do("CLIENT", "KILL", "ID", after[0]); err != nil {
		t.Fatal(err)
	}
	waitRounds(5)
	if again := controlIDs(); len(again) != 1 || again[0] == after[0] {
		t.Errorf("after its connection was killed: control connections %v", again)
	}
	if f := m.Stats().Failures; f != 0 {
		t.Errorf("%d failed rounds; a closed kept connection must be replaced at once", f)
	}
}
