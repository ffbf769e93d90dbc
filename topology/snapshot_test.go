package topology

import (
	"fmt"
	"strings"
	"testing"
)

// Crafted CLUSTER SLOTS replies, built with the helpers below.

func slotsReply(ranges ...string) []byte {
	return []byte(fmt.Sprintf("*%d\r\n%s", len(ranges), strings.Join(ranges, "")))
}

// rng is one range: [lo, hi, node...].
func rng(lo, hi int, nodes ...string) string {
	return fmt.Sprintf("*%d\r\n:%d\r\n:%d\r\n%s", 2+len(nodes), lo, hi, strings.Join(nodes, ""))
}

// node is a node entry as Redis 7 sends it: endpoint, port, id and the networking metadata (a map, which
// RESP2 renders as a flat array). host "NULL" is a null bulk.
func node(host string, port int, id string, meta ...string) string {
	h := fmt.Sprintf("$%d\r\n%s\r\n", len(host), host)
	if host == "NULL" {
		h = "$-1\r\n"
	}
	m := fmt.Sprintf("*%d\r\n", len(meta))
	for _, s := range meta {
		m += fmt.Sprintf("$%d\r\n%s\r\n", len(s), s)
	}
	return fmt.Sprintf("*4\r\n%s:%d\r\n$%d\r\n%s\r\n%s", h, port, len(id), id, m)
}

// oldNode is a pre-7.0 node entry: endpoint, port, id.
func oldNode(host string, port int, id string) string {
	return fmt.Sprintf("*3\r\n$%d\r\n%s\r\n:%d\r\n$%d\r\n%s\r\n", len(host), host, port, len(id), id)
}

func TestFromClusterSlots(t *testing.T) {
	reply := slotsReply(
		// Out of slot order, as older servers (which iterate nodes) send them.
		rng(10923, 16383, node("", 7002, "m2"), node("127.0.0.1", 7005, "r2", "hostname", "host-5")),
		rng(0, 5460, node("127.0.0.1", 7000, "m0"), node("127.0.0.1", 7003, "r0"), node("?", 7009, "rx")),
		rng(5461, 10922, node("NULL", 7001, "m1"), oldNode("127.0.0.1", 7004, "r1")),
	)
	s, err := FromClusterSlots(reply, "10.0.0.9:7000")
	if err != nil {
		t.Fatal(err)
	}
	masters := strings.Join(s.MasterAddrs(), ",")
	if want := "127.0.0.1:7000,10.0.0.9:7001,10.0.0.9:7002"; masters != want {
		t.Errorf("masters in shard order = %s, want %s (NULL and \"\" endpoints are the queried host)", masters, want)
	}
	for slot, want := range map[uint16]string{0: "m0", 5460: "m0", 5461: "m1", 10922: "m1", 10923: "m2", 16383: "m2"} {
		if got := s.Nodes[s.MasterOf(slot)].ID; got != want {
			t.Errorf("master of slot %d = %s, want %s", slot, got, want)
		}
	}
	if len(s.Nodes) != 6 {
		t.Errorf("%d nodes, want 6 (the \"?\" replica skipped): %+v", len(s.Nodes), s.Nodes)
	}
	for i, sh := range s.Shards {
		if len(sh.Replicas) != 1 {
			t.Errorf("shard %d has replicas %v, want 1", i, sh.Replicas)
		}
	}
	if i := s.NodeIndex("127.0.0.1:7005"); i < 0 || s.Nodes[i].ID != "r2" {
		t.Errorf("NodeIndex(127.0.0.1:7005) = %d", i)
	}
	if i := s.NodeIndex("127.0.0.1:7009"); i != -1 {
		t.Errorf("NodeIndex of an unknown node = %d, want -1", i)
	}
	hand := &Snapshot{Nodes: s.Nodes} // no index: linear search
	if i := hand.NodeIndex("10.0.0.9:7001"); i != s.NodeIndex("10.0.0.9:7001") || i < 0 {
		t.Errorf("NodeIndex without index = %d", i)
	}
}

func TestFromClusterSlotsSharedMaster(t *testing.T) {
	// After a reshard a master serves several ranges: one shard.
	s, err := FromClusterSlots(slotsReply(
		rng(0, 99, node("h", 1, "a")),
		rng(100, 199, node("h", 2, "b")),
		rng(200, 16383, node("h", 1, "a")),
	), "h:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Shards) != 2 || s.Slots[0] != s.Slots[300] || s.Slots[150] == s.Slots[0] {
		t.Errorf("shards %+v, slots 0/150/300 → %d/%d/%d", s.Shards, s.Slots[0], s.Slots[150], s.Slots[300])
	}
}

func TestFromClusterSlotsRejects(t *testing.T) {
	full := rng(0, 16383, node("h", 1, "a"))
	for _, tc := range []struct {
		name, reply, want string
	}{
		{"gap in the middle", string(slotsReply(rng(0, 5460, node("a", 1, "")), rng(5462, 16383, node("b", 1, "")))),
			"slot 5461 is not served"},
		{"gap at the end", string(slotsReply(rng(0, 16000, node("a", 1, "")))), "slots 16001-16383 are not served"},
		{"no slots", "*0\r\n", "slots 0-16383 are not served"},
		{"first of two gaps", string(slotsReply(rng(10, 99, node("a", 1, "")), rng(200, 16383, node("a", 1, "")))),
			"slots 0-9 are not served"},
		{"master with unknown endpoint", string(slotsReply(rng(0, 99, node("?", 1, "x")), rng(100, 16383, node("a", 1, "")))),
			"slots 0-99 are not served"},
		{"overlap", string(slotsReply(full, rng(5, 5, node("b", 1, "")))), "slot 5 is listed twice"},
		{"error reply", "-ERR This instance has cluster support disabled\r\n", "cluster support disabled"},
		{"not an array", "+OK\r\n", "not an array"},
		{"null array", "*-1\r\n", "not an array"},
		{"bad range", "*1\r\n*3\r\n:5\r\n:2\r\n" + node("a", 1, ""), "bad slot range 5-2"},
		{"slot out of range", string(slotsReply(rng(0, 16384, node("a", 1, "")))), "bad slot range"},
		{"short range", "*1\r\n*2\r\n:0\r\n:16383\r\n", "malformed slot range"},
		{"bad node", "*1\r\n*3\r\n:0\r\n:16383\r\n:7\r\n", "malformed node entry"},
		{"truncated", string(slotsReply(full))[:30], "EOF"},
		{"huge array", "*99999999\r\n", "array length"},
		{"huge bulk", "*1\r\n$999999999\r\n", "bulk length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := FromClusterSlots([]byte(tc.reply), "h:1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q (snapshot %v)", err, tc.want, s != nil)
			}
		})
	}
}

func TestSameRouting(t *testing.T) {
	parse := func(r []byte) *Snapshot {
		t.Helper()
		s, err := FromClusterSlots(r, "h:1")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := parse(slotsReply(rng(0, 8191, node("h", 1, "a"), node("h", 3, "c"), node("h", 4, "d")),
		rng(8192, 16383, node("h", 2, "b"))))
	// Another node lists the replicas in another order: the same routing.
	b := parse(slotsReply(rng(0, 8191, node("h", 1, "a"), node("h", 4, "d"), node("h", 3, "c")),
		rng(8192, 16383, node("h", 2, "b"))))
	if !a.sameRouting(b) || !b.sameRouting(a) {
		t.Error("replica order made a difference")
	}
	for name, o := range map[string]*Snapshot{
		"slot moved": parse(slotsReply(rng(0, 8192, node("h", 1, "a"), node("h", 3, "c"), node("h", 4, "d")),
			rng(8193, 16383, node("h", 2, "b")))),
		"failover": parse(slotsReply(rng(0, 8191, node("h", 3, "c"), node("h", 1, "a"), node("h", 4, "d")),
			rng(8192, 16383, node("h", 2, "b")))),
		"replica gone": parse(slotsReply(rng(0, 8191, node("h", 1, "a"), node("h", 3, "c")),
			rng(8192, 16383, node("h", 2, "b")))),
		"node replaced": parse(slotsReply(rng(0, 8191, node("h", 1, "a2"), node("h", 3, "c"), node("h", 4, "d")),
			rng(8192, 16383, node("h", 2, "b")))),
		"nil": nil,
	} {
		if a.sameRouting(o) {
			t.Errorf("%s: not seen as a change", name)
		}
	}
	if n := a.movedSlots(parse(slotsReply(rng(0, 8192, node("h", 1, "a")), rng(8193, 16383, node("h", 2, "b"))))); n != 1 {
		t.Errorf("movedSlots = %d, want 1", n)
	}
}

func TestMaxConfigEpoch(t *testing.T) {
	nodes := "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n" +
		"67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 12 connected 5461-10922\n" +
		"e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460\n"
	v := value{kind: '$', str: []byte(nodes)}
	if got := maxConfigEpoch(v); got != 12 {
		t.Errorf("maxConfigEpoch = %d, want 12", got)
	}
	if got := maxConfigEpoch(value{kind: '-', str: []byte("NOPERM")}); got != 0 {
		t.Errorf("maxConfigEpoch(error) = %d, want 0", got)
	}
}

// FuzzFromClusterSlots: no input makes it panic, and whatever it accepts serves every slot from a known node.
func FuzzFromClusterSlots(f *testing.F) {
	f.Add(slotsReply(rng(0, 16383, node("h", 1, "a"), node("NULL", 2, "b"))))
	f.Add(slotsReply(rng(0, 5460, node("", 1, "a")), rng(5461, 16383, node("?", 2, "b"))))
	f.Add([]byte("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$-1\r\n:7\r\n"))
	f.Add([]byte("*-1\r\n"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		s, err := FromClusterSlots(reply, "h:1")
		if err != nil {
			return
		}
		for slot := range NumSlots {
			sh := s.Slots[slot]
			if int(sh) >= len(s.Shards) || s.Shards[sh].Master >= len(s.Nodes) {
				t.Fatalf("slot %d → shard %d of %d", slot, sh, len(s.Shards))
			}
		}
	})
}
