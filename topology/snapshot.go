package topology

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Node is one cluster node.
type Node struct {
	Addr string // host:port, as CLUSTER SLOTS announces it (the queried host when it announces none)
	ID   string // node id; may be empty in crafted replies
}

// Shard is a master and its replicas, as indexes into Snapshot.Nodes.
type Shard struct {
	Master   int
	Replicas []int // in the order CLUSTER SLOTS lists them; only replicas the node considers available
}

// Snapshot is one slot map. It never changes once published: readers on any goroutine use it without locks,
// and a new map is a new Snapshot.
type Snapshot struct {
	Slots   [NumSlots]uint16 // slot → index into Shards; every slot is served
	Shards  []Shard          // in the order of their lowest slot
	Nodes   []Node           // every node once: a shard's master, then its replicas, shard by shard
	Version uint64           // 1 for the first map a Manager publishes, +1 with every swap
	Epoch   uint64           // highest config epoch in CLUSTER NODES of the node that gave this map; 0 if unknown

	index map[string]int // Addr → index into Nodes; nil in hand-made snapshots
}

// MasterOf is the index into Nodes of the master serving slot.
func (s *Snapshot) MasterOf(slot uint16) int { return s.Shards[s.Slots[slot]].Master }

// NodeIndex is the index of addr in Nodes, or -1.
func (s *Snapshot) NodeIndex(addr string) int {
	if s.index != nil {
		if i, ok := s.index[addr]; ok {
			return i
		}
		return -1
	}
	for i := range s.Nodes {
		if s.Nodes[i].Addr == addr {
			return i
		}
	}
	return -1
}

// MasterAddrs lists the masters' addresses in shard order.
func (s *Snapshot) MasterAddrs() []string {
	out := make([]string, len(s.Shards))
	for i, sh := range s.Shards {
		out[i] = s.Nodes[sh.Master].Addr
	}
	return out
}

// sameRouting tells whether two maps have the same content: the same master (address and id) for every
// slot and the same set of replicas for every shard. Version, Epoch, node order and replica order do not
// matter: different nodes may list the replicas of a master in different orders.
func (s *Snapshot) sameRouting(o *Snapshot) bool {
	if o == nil || len(s.Shards) != len(o.Shards) || len(s.Nodes) != len(o.Nodes) {
		return false
	}
	toO := make([]uint16, len(s.Shards)) // shard index in s → shard index in o
	for i, sh := range s.Shards {
		m := s.Nodes[sh.Master]
		j := slices.IndexFunc(o.Shards, func(osh Shard) bool { return o.Nodes[osh.Master] == m })
		if j < 0 || !sameNodeSet(s, sh.Replicas, o, o.Shards[j].Replicas) {
			return false
		}
		toO[i] = uint16(j)
	}
	for slot, sh := range s.Slots {
		if toO[sh] != o.Slots[slot] {
			return false
		}
	}
	return true
}

func sameNodeSet(a *Snapshot, ai []int, b *Snapshot, bi []int) bool {
	if len(ai) != len(bi) {
		return false
	}
	for _, i := range ai {
		if !slices.ContainsFunc(bi, func(j int) bool { return b.Nodes[j] == a.Nodes[i] }) {
			return false
		}
	}
	return true
}

// movedSlots counts the slots whose master address differs between old and s.
func (s *Snapshot) movedSlots(old *Snapshot) int {
	if old == nil {
		return NumSlots
	}
	n := 0
	for slot := range NumSlots {
		if s.Nodes[s.MasterOf(uint16(slot))].Addr != old.Nodes[old.MasterOf(uint16(slot))].Addr {
			n++
		}
	}
	return n
}

// FromClusterSlots builds a snapshot from the raw RESP2 reply to CLUSTER SLOTS sent by the node at queried
// (host:port). It follows the reply's conventions (Redis 7 cluster.c addNodeToNodeReply):
//   - each range is [start, end, master, replica...], each node [endpoint, port, id, metadata...];
//   - an endpoint that is NULL (cluster-preferred-endpoint-type unknown-endpoint) or "" means the host of
//     the node that was queried;
//   - an endpoint "?" (hostname preferred but not set) cannot be dialled: such a node is skipped, and a
//     range whose master is skipped counts as not served.
//
// A map that leaves any slot unserved is refused; the error names the first gap. Version and Epoch are 0.
func FromClusterSlots(reply []byte, queried string) (*Snapshot, error) {
	v, err := readValue(bufio.NewReader(bytes.NewReader(reply)), 0)
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	return fromSlotsValue(v, queried)
}

type slotRange struct {
	lo, hi int
	nodes  []value // master first
}

func fromSlotsValue(v value, queried string) (*Snapshot, error) {
	if v.isError() {
		return nil, fmt.Errorf("CLUSTER SLOTS: %s", v.str)
	}
	if v.kind != '*' || v.null {
		return nil, fmt.Errorf("CLUSTER SLOTS: reply is not an array (type %q)", v.kind)
	}
	qhost, _, err := net.SplitHostPort(queried)
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: queried address: %w", err)
	}
	ranges := make([]slotRange, 0, len(v.elems))
	for _, e := range v.elems {
		if e.kind != '*' || len(e.elems) < 3 || e.elems[0].kind != ':' || e.elems[1].kind != ':' {
			return nil, errors.New("CLUSTER SLOTS: malformed slot range")
		}
		lo, hi := e.elems[0].num, e.elems[1].num
		if lo < 0 || hi >= NumSlots || lo > hi {
			return nil, fmt.Errorf("CLUSTER SLOTS: bad slot range %d-%d", lo, hi)
		}
		ranges = append(ranges, slotRange{int(lo), int(hi), e.elems[2:]})
	}
	// Build in slot order, so that the same cluster always gives the same Nodes and Shards order.
	slices.SortFunc(ranges, func(a, b slotRange) int { return a.lo - b.lo })

	s := &Snapshot{index: make(map[string]int)}
	var served [NumSlots]bool
	shardOf := map[int]int{} // master node index → shard index
	for _, r := range ranges {
		master, ok, err := s.node(r.nodes[0], qhost)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // unknown endpoint: the range stays unserved
		}
		sh, seen := shardOf[master]
		if !seen {
			sh = len(s.Shards)
			shardOf[master] = sh
			s.Shards = append(s.Shards, Shard{Master: master})
			for _, rv := range r.nodes[1:] {
				rn, ok, err := s.node(rv, qhost)
				if err != nil {
					return nil, err
				}
				if ok && rn != master && !slices.Contains(s.Shards[sh].Replicas, rn) {
					s.Shards[sh].Replicas = append(s.Shards[sh].Replicas, rn)
				}
			}
		}
		for slot := r.lo; slot <= r.hi; slot++ {
			if served[slot] {
				return nil, fmt.Errorf("CLUSTER SLOTS: slot %d is listed twice", slot)
			}
			served[slot] = true
			s.Slots[slot] = uint16(sh)
		}
	}
	if lo := slices.Index(served[:], false); lo >= 0 {
		hi := lo
		for hi+1 < NumSlots && !served[hi+1] {
			hi++
		}
		if lo == hi {
			return nil, fmt.Errorf("CLUSTER SLOTS: slot %d is not served", lo)
		}
		return nil, fmt.Errorf("CLUSTER SLOTS: slots %d-%d are not served", lo, hi)
	}
	return s, nil
}

// node adds (once) the node described by a CLUSTER SLOTS node entry and returns its index; ok is false
// for a node without a usable endpoint.
func (s *Snapshot) node(v value, qhost string) (idx int, ok bool, err error) {
	if v.kind != '*' || len(v.elems) < 2 {
		return 0, false, errors.New("CLUSTER SLOTS: malformed node entry")
	}
	host, port := v.elems[0], v.elems[1]
	if (host.kind != '$' && host.kind != '+') || port.kind != ':' {
		return 0, false, errors.New("CLUSTER SLOTS: malformed node endpoint")
	}
	h := string(host.str)
	switch {
	case h == "?" || port.num <= 0 || port.num > 65535:
		return 0, false, nil
	case host.null || h == "":
		h = qhost
	}
	addr := net.JoinHostPort(h, strconv.FormatInt(port.num, 10))
	if i, ok := s.index[addr]; ok {
		return i, true, nil
	}
	var id string
	if len(v.elems) > 2 && v.elems[2].kind == '$' {
		id = string(v.elems[2].str)
	}
	s.Nodes = append(s.Nodes, Node{Addr: addr, ID: id})
	s.index[addr] = len(s.Nodes) - 1
	return len(s.Nodes) - 1, true, nil
}

// maxConfigEpoch is the highest config epoch (7th field) in a CLUSTER NODES reply, 0 if there is none.
func maxConfigEpoch(v value) uint64 {
	if v.kind != '$' || v.null {
		return 0
	}
	var max uint64
	for line := range strings.SplitSeq(string(v.str), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		if e, err := strconv.ParseUint(f[6], 10, 64); err == nil && e > max {
			max = e
		}
	}
	return max
}
