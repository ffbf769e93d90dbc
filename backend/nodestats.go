package backend

import (
	"math"
	"time"
)

// Per-node statistics of one pool, kept on its loop with plain counters: NodeStats copies them, on the loop.

// LatencyBounds are the upper bounds, in seconds, of the latency histograms' buckets (the proxy's and the
// nodes'): 50 µs to 10 s.
var LatencyBounds = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10}

// LatencyBoundsNs are LatencyBounds in nanoseconds.
var LatencyBoundsNs = func() []int64 {
	ns := make([]int64, len(LatencyBounds))
	for i, b := range LatencyBounds {
		ns[i] = int64(math.Round(b * 1e9))
	}
	return ns
}()

// NumBuckets is the number of latency buckets: one per bound and one above the last.
const NumBuckets = 18

// Bucket is the latency bucket of d ns.
func Bucket(d int64) int {
	b := 0
	for b < len(LatencyBoundsNs) && d > LatencyBoundsNs[b] {
		b++
	}
	return b
}

// NodeStats is what one pool did with one node.
type NodeStats struct {
	Replies      uint64             // replies read on request connections
	ErrorReplies uint64             // of Replies, errors (MOVED, ASK and TRYAGAIN included)
	Dials        uint64             // connections attempted
	Conns        int                // open now
	InFlight     int                // requests written or queued to it now
	Leased       int                // leased connections held by a session now (open or dialling)
	LatencyNs    uint64             // sum of reply latencies: from the write of a request to its reply
	Buckets      [NumBuckets]uint64 // reply latencies
}

// Add sums o into s.
func (s *NodeStats) Add(o NodeStats) {
	s.Replies += o.Replies
	s.ErrorReplies += o.ErrorReplies
	s.Dials += o.Dials
	s.Conns += o.Conns
	s.InFlight += o.InFlight
	s.Leased += o.Leased
	s.LatencyNs += o.LatencyNs
	for i := range s.Buckets {
		s.Buckets[i] += o.Buckets[i]
	}
}

// NodeStats reports, by node address, what this pool did. Call it on the pool's loop.
func (p *Pool) NodeStats() map[string]NodeStats {
	m := make(map[string]NodeStats, len(p.nodes))
	for addr, n := range p.nodes {
		st := n.stats
		for _, c := range append(n.conns[:len(n.conns):len(n.conns)], n.leased...) {
			if c.state == stateOpen {
				st.Conns++
			}
			st.InFlight += c.fifo.Len()
		}
		st.Leased = len(n.leased) - len(n.idle)
		m[addr] = st
	}
	return m
}

// stampSent sets the send time of the fifo's last n requests (just written).
func (c *Conn) stampSent(n int) {
	now := time.Now().UnixNano()
	for i := c.fifo.Len() - n; i < c.fifo.Len(); i++ {
		if r := c.fifo.At(i); r != nil && r != askingMarker {
			r.sentAt = now
		}
	}
}

// countReply counts a reply of the node to r, read at now.
func (c *Conn) countReply(r *Request, reply []byte, now int64) {
	n := c.node
	if n == nil {
		return
	}
	n.stats.Replies++
	if len(reply) > 0 && reply[0] == '-' {
		n.stats.ErrorReplies++
	}
	if r != nil && r != askingMarker && r.sentAt > 0 {
		d := max(now-r.sentAt, 0)
		n.stats.LatencyNs += uint64(d)
		n.stats.Buckets[Bucket(d)]++
	}
}
