package topology

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

// Known vectors (checked against CLUSTER KEYSLOT of redis-server 7.0.15).
var slotVectors = []struct {
	key  string
	slot uint16
}{
	{"", 0},
	{"123456789", 12739},
	{"{}foo", 9500},
	{"foo{}", 5542},
	{"foo{}{bar}", 8363},
	{"foo{{bar}}zap", 4015},
	{"foo{bar}", 5061},
	{"{user1000}.following", 3443},
	{"{user1000}.followers", 3443},
}

func TestSlotVectors(t *testing.T) {
	for _, v := range slotVectors {
		if got := Slot([]byte(v.key)); got != v.slot {
			t.Errorf("Slot(%q) = %d, want %d", v.key, got, v.slot)
		}
	}
}

func TestSlotAllocs(t *testing.T) {
	k := []byte("{user1000}.following")
	if n := testing.AllocsPerRun(1000, func() { Slot(k) }); n != 0 {
		t.Errorf("Slot allocates %v times", n)
	}
}

// TestSlotMatchesServer compares Slot with CLUSTER KEYSLOT for edge cases and random binary keys.
func TestSlotMatchesServer(t *testing.T) {
	srv := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := srv.Client(t)
	keys := []string{"", "{", "}", "{}", "{a", "a}", "a{b}c{d}", "{}{x}", "{{}}", "{a}{b}", "\x00", "\xff{\x00}",
		"a\x00{b\xff}c", strings.Repeat("k", 10000), "{" + strings.Repeat("t", 1000) + "}x"}
	for _, v := range slotVectors {
		keys = append(keys, v.key)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		b := make([]byte, r.IntN(20))
		for j := range b {
			b[j] = "ab{}\x00\xff"[r.IntN(6)]
		}
		keys = append(keys, string(b))
	}
	for _, k := range keys {
		want, err := c.ClusterKeySlot(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Slot([]byte(k)); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT = %d", k, got, want)
		}
	}
}

func BenchmarkSlot(b *testing.B) {
	k := []byte("key:000000012345")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Slot(k)
	}
}

func slotsReply(ranges ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(ranges))
	for _, r := range ranges {
		b.WriteString(r)
	}
	return []byte(b.String())
}

func rangeReply(lo, hi int, hosts ...string) string {
	s := fmt.Sprintf("*%d\r\n:%d\r\n:%d\r\n", 2+len(hosts), lo, hi)
	for _, h := range hosts {
		host, port, _ := strings.Cut(h, ":")
		if host == "NULL" {
			s += fmt.Sprintf("*2\r\n$-1\r\n:%s\r\n", port)
		} else {
			s += fmt.Sprintf("*3\r\n$%d\r\n%s\r\n:%s\r\n$2\r\nid\r\n", len(host), host, port)
		}
	}
	return s
}

func TestFromClusterSlots(t *testing.T) {
	s, err := FromClusterSlots(slotsReply(
		rangeReply(0, 5460, "127.0.0.1:7000", "127.0.0.1:7003"),
		rangeReply(5461, 10922, "NULL:7001", "127.0.0.1:7004"),
		rangeReply(10923, 16383, ":7002"),
	), "10.0.0.9:7000")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Nodes[s.MasterOf(6000)].Addr; got != "10.0.0.9:7001" {
		t.Errorf("NULL endpoint: master of 6000 = %s, want the queried host", got)
	}
	if got := s.Nodes[s.MasterOf(16383)].Addr; got != "10.0.0.9:7002" {
		t.Errorf("empty endpoint: master of 16383 = %s", got)
	}
	if len(s.Shards) != 3 || len(s.Shards[0].Replicas) != 1 {
		t.Errorf("shards = %+v", s.Shards)
	}
	_, err = FromClusterSlots(slotsReply(rangeReply(0, 5460, "a:1"), rangeReply(5462, 16383, "b:1")), "a:1")
	if err == nil || !strings.Contains(err.Error(), "slot 5461") {
		t.Errorf("gap: err = %v, want it to name slot 5461", err)
	}
}

func TestManagerAgainstCluster(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	m := NewManager(Config{Seeds: []string{"127.0.0.1:1", cl.Nodes[0].Addr}, RefreshInterval: time.Hour})
	m.Start()
	defer m.Close()
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no slot map")
	}
	s := m.Snapshot()
	if len(s.Shards) != 3 {
		t.Fatalf("%d shards", len(s.Shards))
	}
	for i, sh := range s.Shards {
		if len(sh.Replicas) != 1 {
			t.Errorf("shard %d has %d replicas", i, len(sh.Replicas))
		}
	}

	// A burst of refresh requests is coalesced.
	before := m.Refreshes()
	for i := 0; i < 1000; i++ {
		m.RequestRefresh()
	}
	time.Sleep(500 * time.Millisecond)
	if n := m.Refreshes() - before; n < 1 || n > 2 {
		t.Errorf("1000 RequestRefresh calls made %d refreshes", n)
	}

	// A manual failover is picked up.
	replica := s.Nodes[s.Shards[0].Replicas[0]].Addr
	var rs *redistest.Server
	for _, n := range cl.Nodes {
		if n.Addr == replica {
			rs = n
		}
	}
	if err := rs.Client(t).ClusterFailover(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m.RequestRefresh()
		time.Sleep(200 * time.Millisecond)
		if cur := m.Snapshot(); cur.Nodes[cur.MasterOf(0)].Addr == replica {
			if cur.Version <= s.Version {
				t.Errorf("version did not increase: %d → %d", s.Version, cur.Version)
			}
			return
		}
	}
	t.Fatalf("the promoted replica %s never became master of slot 0", replica)
}

func TestManagerWaitsForSeeds(t *testing.T) {
	port := redistest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	m := NewManager(Config{Seeds: []string{addr}, RefreshInterval: time.Hour})
	m.Start()
	defer m.Close()
	time.Sleep(300 * time.Millisecond)
	if m.Snapshot() != nil {
		t.Fatal("a snapshot without any seed")
	}
	if m.Refreshes() < 2 {
		t.Errorf("only %d attempts in 300ms", m.Refreshes())
	}
	// A single-node cluster appears on the seed's port later.
	srv := redistest.StartServerOnPort(t, port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := srv.Client(t)
	ctx := context.Background()
	if err := c.ClusterAddSlotsRange(ctx, 0, NumSlots-1).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the seed that came up was never used")
	}
}
