package topology

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/slotproxy/slotproxy/resp"
)

// Node is one cluster node.
type Node struct {
	Addr string // host:port
	ID   string
}

// Shard is a master and its replicas, as indexes into Snapshot.Nodes.
type Shard struct {
	Master   int
	Replicas []int
}

// Snapshot is one slot map. It never changes once published.
type Snapshot struct {
	Slots   [NumSlots]uint16 // slot → index into Shards
	Shards  []Shard
	Nodes   []Node
	Version uint64 // increases with every swap in this process
}

// MasterOf is the index into Nodes of the master serving slot.
func (s *Snapshot) MasterOf(slot uint16) int { return s.Shards[s.Slots[slot]].Master }

// NodeIndex is the index of addr in Nodes, or -1.
func (s *Snapshot) NodeIndex(addr string) int {
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

// sameAs tells whether two maps route every slot to the same nodes.
func (s *Snapshot) sameAs(o *Snapshot) bool {
	if o == nil || len(s.Shards) != len(o.Shards) || len(s.Nodes) != len(o.Nodes) {
		return false
	}
	for i := range s.Nodes {
		if s.Nodes[i] != o.Nodes[i] {
			return false
		}
	}
	for i := range s.Shards {
		if s.Shards[i].Master != o.Shards[i].Master || !slices.Equal(s.Shards[i].Replicas, o.Shards[i].Replicas) {
			return false
		}
	}
	return s.Slots == o.Slots
}

// FromClusterSlots builds a snapshot from a CLUSTER SLOTS reply (RESP2 bytes) received from the node at
// queried. Node endpoints that are empty or NULL mean the queried host. A map that leaves a slot unserved is
// refused.
func FromClusterSlots(reply []byte, queried string) (*Snapshot, error) {
	if resp.IsError(reply) {
		return nil, fmt.Errorf("CLUSTER SLOTS: %s", trimCRLF(reply[1:]))
	}
	ranges, ok := resp.ArrayElems(reply, nil)
	if !ok {
		return nil, errors.New("CLUSTER SLOTS: not an array")
	}
	qhost, _, _ := net.SplitHostPort(queried)
	s := &Snapshot{}
	covered := make([]bool, NumSlots)
	nodeIdx := map[string]int{}
	shardOf := map[int]int{} // master node index → shard
	node := func(b []byte) (int, error) {
		f, ok := resp.ArrayElems(b, nil)
		if !ok || len(f) < 2 {
			return 0, errors.New("CLUSTER SLOTS: bad node entry")
		}
		host, isNull, ok := resp.BulkValue(f[0])
		if !ok {
			return 0, errors.New("CLUSTER SLOTS: bad node host")
		}
		port, ok := resp.ParseInt(f[1])
		if !ok || port <= 0 || port > 65535 {
			return 0, errors.New("CLUSTER SLOTS: bad node port")
		}
		h := string(host)
		if isNull || h == "" || h == "?" {
			h = qhost
		}
		id := ""
		if len(f) > 2 {
			if v, _, ok := resp.BulkValue(f[2]); ok {
				id = string(v)
			}
		}
		addr := net.JoinHostPort(h, strconv.Itoa(int(port)))
		if i, ok := nodeIdx[addr]; ok {
			return i, nil
		}
		s.Nodes = append(s.Nodes, Node{Addr: addr, ID: id})
		nodeIdx[addr] = len(s.Nodes) - 1
		return len(s.Nodes) - 1, nil
	}
	for _, r := range ranges {
		f, ok := resp.ArrayElems(r, nil)
		if !ok || len(f) < 3 {
			return nil, errors.New("CLUSTER SLOTS: bad slot range")
		}
		lo, ok1 := resp.ParseInt(f[0])
		hi, ok2 := resp.ParseInt(f[1])
		if !ok1 || !ok2 || lo < 0 || hi >= NumSlots || lo > hi {
			return nil, errors.New("CLUSTER SLOTS: bad slot range bounds")
		}
		m, err := node(f[2])
		if err != nil {
			return nil, err
		}
		sh, ok := shardOf[m]
		if !ok {
			s.Shards = append(s.Shards, Shard{Master: m})
			sh = len(s.Shards) - 1
			shardOf[m] = sh
			for _, rb := range f[3:] {
				rn, err := node(rb)
				if err != nil {
					return nil, err
				}
				s.Shards[sh].Replicas = append(s.Shards[sh].Replicas, rn)
			}
		}
		for slot := lo; slot <= hi; slot++ {
			covered[slot] = true
			s.Slots[slot] = uint16(sh)
		}
	}
	for slot, ok := range covered {
		if !ok {
			return nil, fmt.Errorf("CLUSTER SLOTS: slot %d is not served", slot)
		}
	}
	return s, nil
}

func trimCRLF(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
