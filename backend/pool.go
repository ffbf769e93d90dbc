package backend

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/internal/tlsloop"

	"github.com/slotproxy/slotproxy/internal/inbox"
	"github.com/slotproxy/slotproxy/topology"
)

// Config holds the backend settings shared by every Pool.
type Config struct {
	ConnsPerNode    int           // pipelined connections per node per event loop
	DialTimeout     time.Duration // connect plus AUTH handshake
	RetryBackoffMin time.Duration // first retry delay after TRYAGAIN, CLUSTERDOWN or a lost node
	RetryBackoffMax time.Duration // cap of the doubling retry delay
	MaxRedirects    int           // MOVED/ASK hops per request; past them the request fails with an error naming the loop
	StallTimeout    time.Duration // close a connection that awaits replies and received nothing this long; 0: never
	Username        string        // ACL user for AUTH; empty means the default user
	Password        string        // AUTH password; empty means no AUTH
	ReadFrom        ReadPolicy    // where read-only commands go
	MaxLeases       int           // leased connections per node per event loop (lease.go)
	// Protocol is the RESP version the connections speak: 3 sends HELLO 3 on connect, so every reply comes in
	// RESP3 and is passed through to RESP3 clients as it is; 0 or 2 is RESP2, Redis's default.
	Protocol int
	// TLS, if set, is used on every connection (the node's host as ServerName when it names none).
	TLS *tls.Config
}

// ReadPolicy says which nodes serve read-only commands. Replica reads may be stale: a replica applies its
// master's writes asynchronously, so a client may not read back its own write at once.
type ReadPolicy int

const (
	ReadMaster        ReadPolicy = iota // everything to the slot's master
	ReadPreferReplica                   // reads to one replica per client (sticky), the master if none is healthy
	ReadReplica                         // reads spread over the replicas, the master if none is healthy
)

// ParseReadPolicy reads the config value.
func ParseReadPolicy(s string) (ReadPolicy, bool) {
	switch s {
	case "master", "":
		return ReadMaster, true
	case "prefer-replica":
		return ReadPreferReplica, true
	case "replica":
		return ReadReplica, true
	}
	return 0, false
}

// Topology is the slot map source a Pool routes by.
type Topology interface {
	Snapshot() *topology.Snapshot // current map, nil before the first one
	RequestRefresh()              // ask for a (coalesced) refresh; never blocks
}

// Pool is the set of backend connections of one event loop. All methods must run on that loop, except where
// noted.
type Pool struct {
	Owner   any            // the loop state of whoever made the pool; backend never looks at it
	Buffers *inbox.Buffers // the loop's large buffers, for replies that span reads; nil allocates

	el   gnet.EventLoop
	cfg  *Config
	topo Topology
	log  *slog.Logger
	wake func(after time.Duration) // asks the owner to run Tick on this loop after a delay; safe off-loop

	snap    *topology.Snapshot
	byNode  []*node           // snapshot node index → node
	nodes   map[string]*node  // every node this loop has connections to, by address
	moved   map[int]string    // slot → node named by a MOVED since the last snapshot swap
	dirty   []*Conn           // connections with bytes waiting for Flush
	waiting []*Request        // requests backing off before a retry
	behind  map[uint32]behind // Affinity → its requests in waiting (Pool.retry)
	due     []*Request        // scratch for Tick
	wakeAt  int64             // earliest pending wake-up (unix ns), 0 if none

	Stats Stats // written by the loop only, read by anyone

	tlsScratch tlsloop.Scratch // decrypted replies of the pool's TLS connections, for one callback

	reportsMu sync.Mutex   // guards reports, the one field dial goroutines write
	reports   []dialReport // failed dials waiting for Tick
}

// Stats counts what the pool absorbed on behalf of clients.
type Stats struct {
	Moved         atomic.Int64                  // MOVED replies followed
	Ask           atomic.Int64                  // ASK replies followed
	Retries       [NumRetryReasons]atomic.Int64 // requests parked for a resend, by RetryReason
	Failed        atomic.Int64                  // requests answered with an error by the pool (deadline, lost connection)
	ConnsLost     atomic.Int64                  // open connections that closed unexpectedly
	DialErrors    atomic.Int64                  // failed dials
	LeasesRefused atomic.Int64                  // Lease calls refused at MaxLeases
}

// RetryReason is why a request was parked to be sent again.
type RetryReason uint8

const (
	RetryTryAgain    RetryReason = iota // -TRYAGAIN: a multi-key request during a slot migration
	RetryLoading                        // -LOADING: the node is loading its dataset
	RetryClusterDown                    // -CLUSTERDOWN
	RetryReadOnly                       // -READONLY: a master became a replica
	RetryMasterDown                     // -MASTERDOWN: a replica lost its master
	RetryUnreachable                    // the node's connection was lost, or could not be made
	NumRetryReasons
)

// String is the reason's metric label.
func (r RetryReason) String() string {
	return [...]string{"tryagain", "loading", "clusterdown", "readonly", "masterdown", "unreachable"}[r]
}

// retryReasonOf is the reason a retried error reply gives.
func retryReasonOf(k errorKind) RetryReason {
	switch k {
	case errTryAgain:
		return RetryTryAgain
	case errLoading:
		return RetryLoading
	case errReadOnly:
		return RetryReadOnly
	case errMasterDown:
		return RetryMasterDown
	}
	return RetryClusterDown
}

// RetriesFor sums the retries of the given reasons.
func (st *Stats) RetriesFor(reasons ...RetryReason) int64 {
	var n int64
	for _, r := range reasons {
		n += st.Retries[r].Load()
	}
	return n
}

type dialReport struct {
	conn *Conn
	err  error
}

type node struct {
	addr          string
	conns         []*Conn
	leased        []*Conn // every leased connection, held or idle
	idle          []*Conn // released leases, open, kept for reuse
	stale         bool    // not in the current snapshot: closed once idle
	unhealthyTill int64   // unix ns; replicas are not chosen for reads before it
	failedAt      int64   // unix ns of the last lost connection or failed dial
	stats         NodeStats
}

// NewPool makes the pool for event loop el. wake must arrange for the owner to call Tick on el after the delay.
func NewPool(el gnet.EventLoop, cfg *Config, topo Topology, log *slog.Logger, wake func(time.Duration)) *Pool {
	return &Pool{el: el, cfg: cfg, topo: topo, log: log, wake: wake, nodes: make(map[string]*node)}
}

// SetConfig makes cfg the pool's configuration from the next request on; call it on the pool's loop.
// Connections already open keep their count (ConnsPerNode) and their handshake.
func (p *Pool) SetConfig(cfg *Config) { p.cfg = cfg }

// Config is the pool's configuration now.
func (p *Pool) Config() *Config { return p.cfg }

// Snapshot returns the current slot map, refreshing the loop's node index when it changed.
func (p *Pool) Snapshot() *topology.Snapshot {
	s := p.topo.Snapshot()
	if s != p.snap && s != nil {
		p.adopt(s)
	}
	return s
}

func (p *Pool) adopt(s *topology.Snapshot) {
	p.snap = s
	p.byNode = make([]*node, len(s.Nodes))
	for _, n := range p.nodes {
		n.stale = true
	}
	for i := range s.Nodes {
		n := p.node(s.Nodes[i].Addr)
		n.stale = false
		p.byNode[i] = n
	}
	clear(p.moved)
}

func (p *Pool) node(addr string) *node {
	n := p.nodes[addr]
	if n == nil {
		n = &node{addr: addr, conns: make([]*Conn, p.cfg.ConnsPerNode)}
		for i := range n.conns {
			n.conns[i] = &Conn{pool: p, addr: addr, node: n, pushy: p.cfg.Protocol == 3}
			n.conns[i].in.Buffers = p.Buffers
		}
		p.nodes[addr] = n
	}
	return n
}

// behind is what a client (an Affinity) has in waiting: how many requests, and the latest retryAt of them.
type behind struct {
	last int64
	n    int
}

// park puts r in waiting until at, counted for its client.
func (p *Pool) park(r *Request, at int64) {
	if p.behind == nil {
		p.behind = make(map[uint32]behind)
	}
	b := p.behind[r.Affinity]
	b.last, b.n = max(b.last, at), b.n+1
	p.behind[r.Affinity] = b
	r.retryAt = min(at, r.Deadline) // at the deadline Tick gives the one error instead of a resend
	p.waiting = append(p.waiting, r)
}

// unpark counts r out of waiting.
func (p *Pool) unpark(r *Request) {
	if b, ok := p.behind[r.Affinity]; ok {
		if b.n--; b.n <= 0 {
			delete(p.behind, r.Affinity)
		} else {
			p.behind[r.Affinity] = b
		}
	}
}

// Send routes r to its node and queues it there. The reply arrives through r.Sink, on this loop, possibly
// before Send returns (for an error that needs no network round trip).
func (p *Pool) Send(r *Request) {
	if len(p.waiting) > 0 && r.attempts == 0 && r.redirects == 0 {
		if b := p.behind[r.Affinity]; b.n > 0 {
			// Its client has requests waiting to be resent: a new one must not overtake them.
			r.lastErr = "ERR proxy timeout: waiting behind an earlier request of this client"
			p.park(r, b.last)
			now := time.Now().UnixNano()
			p.scheduleWake(max(b.last, now), now)
			return
		}
	}
	var n *node
	switch {
	case r.ask != "":
		n = p.node(r.ask)
	case r.moved != "":
		n = p.node(r.moved)
	case r.Node != "" && r.attempts == 0 && r.redirects == 0:
		n = p.node(r.Node)
	default:
		s := p.Snapshot()
		if s == nil {
			// No node has answered yet: say so now rather than hold the client.
			p.fail(r, "CLUSTERDOWN The cluster is down")
			return
		}
		if addr, ok := p.moved[r.Slot]; ok {
			n = p.node(addr)
		} else if n = p.replicaFor(s, r); n == nil {
			n = p.byNode[s.MasterOf(uint16(r.Slot))]
		}
	}
	n.conns[r.Affinity%uint32(len(n.conns))].enqueue(r)
}

// replicaFor picks the replica that serves a read under the read policy, or nil for the master. A read that
// was retried (its node failed it) goes to the master.
func (p *Pool) replicaFor(s *topology.Snapshot, r *Request) *node {
	if p.cfg.ReadFrom == ReadMaster || !r.ReadOnly || r.attempts > 0 {
		return nil
	}
	reps := s.Shards[s.Slots[r.Slot]].Replicas
	if len(reps) == 0 {
		return nil
	}
	start := int(r.Affinity)
	if p.cfg.ReadFrom == ReadReplica {
		start = rand.IntN(len(reps))
	}
	var now int64
	for i := range reps {
		n := p.byNode[reps[(start+i)%len(reps)]]
		if n.unhealthyTill != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if now < n.unhealthyTill {
				continue
			}
			n.unhealthyTill = 0
		}
		return n
	}
	return nil
}

// FailedWithin tells whether addr lost a connection or failed a dial in the window before now (ns).
func (p *Pool) FailedWithin(addr string, now, window int64) bool {
	n := p.nodes[addr]
	return n != nil && n.failedAt != 0 && now-n.failedAt < window
}

func (p *Pool) markUnhealthy(addr string, d time.Duration) {
	if n := p.nodes[addr]; n != nil {
		now := time.Now()
		n.unhealthyTill = now.Add(d).UnixNano()
		n.failedAt = now.UnixNano()
	}
}

// FlushFull writes the connections with at least min requests waiting, and reports whether any with fewer
// still wait for Flush.
func (p *Pool) FlushFull(min int) (rest bool) {
	keep := p.dirty[:0]
	for _, c := range p.dirty {
		if c.unsent >= min {
			c.flush()
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.dirty[len(keep):])
	p.dirty = keep
	return len(keep) > 0
}

// Flush writes every connection's queued bytes: one write per connection per batch.
func (p *Pool) Flush() {
	for i, c := range p.dirty {
		p.dirty[i] = nil
		c.flush()
	}
	p.dirty = p.dirty[:0]
}

// Tick resends requests whose backoff has passed, fails requests past their deadline and closes
// connections to nodes that left the cluster. The caller flushes afterwards.
func (p *Pool) Tick(now int64) {
	if p.wakeAt != 0 && p.wakeAt <= now {
		p.wakeAt = 0
	}
	p.takeReports()
	p.Snapshot()
	due, keep := p.due[:0], p.waiting[:0]
	for _, r := range p.waiting {
		if r.retryAt <= now || r.Deadline <= now { // a backoff does not outlast the request's deadline
			due = append(due, r)
			p.unpark(r)
		} else {
			keep = append(keep, r)
		}
	}
	clear(p.waiting[len(keep):])
	p.waiting = keep
	for i, r := range due {
		due[i] = nil
		if now >= r.Deadline {
			p.fail(r, r.lastErr)
			continue
		}
		p.Send(r)
	}
	p.due = due[:0]
	if len(p.waiting) > 0 {
		next := p.waiting[0].retryAt
		for _, r := range p.waiting {
			next = min(next, r.retryAt)
		}
		p.scheduleWake(next, now)
	}
	for addr, n := range p.nodes {
		idle := true
		for _, c := range n.conns {
			c.expire(now)
			if c.fifo.Len() > 0 {
				idle = false
			}
		}
		for _, c := range slices.Clone(n.leased) {
			c.expireLeased(now)
		}
		if n.stale {
			for _, c := range slices.Clone(n.idle) {
				p.dropLease(c)
			}
		}
		if n.stale && idle && len(n.leased) == 0 {
			for _, c := range n.conns {
				c.shut()
			}
			delete(p.nodes, addr)
		}
	}
}

// Busy reports whether the pool has work for Tick: requests waiting to be resent, or awaiting a reply
// (written, queued, or answered already and awaiting the late reply that a stalled connection never sends).
func (p *Pool) Busy() bool {
	if len(p.waiting) > 0 {
		return true
	}
	for _, n := range p.nodes {
		for _, c := range n.conns {
			if c.fifo.Len() > 0 {
				return true
			}
		}
		for _, c := range n.leased {
			if c.fifo.Len() > 0 {
				return true
			}
		}
	}
	return false
}

// Close closes every connection; queued requests fail. Used when the loop's engine stops.
func (p *Pool) Close() {
	for addr, n := range p.nodes {
		for _, c := range n.conns {
			c.shut()
		}
		for _, c := range slices.Clone(n.leased) {
			p.dropLease(c)
		}
		delete(p.nodes, addr)
	}
}

// Conns reports how many connections this loop has open or dialing, by node address.
func (p *Pool) Conns() map[string]int {
	m := make(map[string]int, len(p.nodes))
	for addr, n := range p.nodes {
		for _, c := range append(n.conns[:len(n.conns):len(n.conns)], n.leased...) {
			if c.state == stateOpen || c.state == stateDialing {
				m[addr]++
			}
		}
	}
	return m
}

func (p *Pool) markDirty(c *Conn) {
	if !c.dirty {
		c.dirty = true
		p.dirty = append(p.dirty, c)
	}
}

// redirect follows a MOVED or ASK reply.
func (p *Pool) redirect(r *Request, reply []byte, kind errorKind, from string) {
	addr, ok := redirectTarget(reply, from)
	if !ok {
		p.fail(r, fmt.Sprintf("ERR unreadable redirect from %s: %s", from, bytes.TrimRight(reply[1:], "\r\n")))
		return
	}
	if r.redirects >= p.cfg.MaxRedirects {
		// A raw MOVED would tell a cluster-unaware client nothing it can act on.
		p.fail(r, fmt.Sprintf("ERR too many redirects (%d) for slot %d: last %s from %s to %s",
			r.redirects, r.Slot, kind, from, addr))
		return
	}
	r.redirects++
	if kind == errAsk {
		p.Stats.Ask.Add(1)
		r.ask = addr
	} else {
		p.Stats.Moved.Add(1)
		r.moved = addr
		if r.Slot >= 0 {
			if p.moved == nil {
				p.moved = make(map[int]string)
			}
			p.moved[r.Slot] = addr
		}
		p.topo.RequestRefresh()
	}
	p.Send(r)
}

// retry parks r for a backoff; a request whose deadline has come fails with errText, at the deadline.
func (p *Pool) retry(r *Request, why RetryReason, errText string) {
	now := time.Now().UnixNano()
	r.attempts++
	r.lastErr = errText
	backoff := p.cfg.RetryBackoffMin << min(r.attempts-1, 16)
	backoff = min(backoff, p.cfg.RetryBackoffMax)
	backoff = backoff/2 + rand.N(backoff/2+1) // jitter spreads retries of a burst
	at := now + int64(backoff)
	if now >= r.Deadline {
		p.fail(r, errText)
		return
	}
	p.Stats.Retries[why].Add(1)
	// A client's requests are resent in the order it sent them: none before an earlier one that waits too
	// (Tick resends due requests in the order they were parked).
	if b := p.behind[r.Affinity]; b.n > 0 && b.last > at {
		at = b.last
	}
	r.ask = ""
	p.park(r, at)
	p.scheduleWake(at, now)
}

func (p *Pool) scheduleWake(at, now int64) {
	if p.wakeAt != 0 && p.wakeAt <= at {
		return
	}
	p.wakeAt = at
	p.wake(time.Duration(at - now))
}

func (p *Pool) fail(r *Request, errText string) {
	p.Stats.Failed.Add(1)
	r.Failed = true
	p.deliver(r, fmt.Appendf(nil, "-%s\r\n", errText))
}

func (p *Pool) deliver(r *Request, reply []byte) {
	r.Sink.Reply(r, reply)
}

// reportDial hands a dial goroutine's failure to the loop: it is taken up by the next Tick. Safe off-loop.
func (p *Pool) reportDial(c *Conn, err error) {
	p.reportsMu.Lock()
	p.reports = append(p.reports, dialReport{c, err})
	p.reportsMu.Unlock()
	p.wake(0)
}

func (p *Pool) takeReports() {
	p.reportsMu.Lock()
	reports := p.reports
	p.reports = nil
	p.reportsMu.Unlock()
	for _, d := range reports {
		d.conn.dialFailed(d.err)
	}
}
