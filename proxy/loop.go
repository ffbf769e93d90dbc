package proxy

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/internal/inbox"
	"github.com/slotproxy/slotproxy/internal/tlsloop"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// loop is the state of one gnet event loop. Every field is owned by that loop's goroutine, except
// wakePending (atomic).
type loop struct {
	srv  *Server
	el   gnet.EventLoop
	pool *backend.Pool // RESP2 connections: every session's until it says HELLO 3
	// pool3 holds RESP3 connections (HELLO 3 on connect), for the sessions that said HELLO 3: made by the
	// first of them (resp3Pool), so a loop of RESP2 clients has none. Their replies pass through as the nodes
	// send them. Converting RESP2 replies instead cannot work: RESP2 does not say that HGETALL's array is a
	// map, that ZSCORE's bulk is a double or that SMEMBERS's array is a set; only the command's reply schema
	// does, and every reply would be decoded and re-encoded on the loop. Nil before.
	// Atomic only so that readers off the loop (BackendStats at scrape time) see it; the loop alone sets it.
	pool3 atomic.Pointer[backend.Pool]

	touched       []*session     // sessions with replies to write at the end of this callback, or held (flushClients)
	paused        []*session     // sessions that stopped reading at a limit; retried on every tick
	epfd          int            // the loop's epoll descriptor, for pausing reads; -1 if unknown
	bufs          inbox.Buffers  // large buffers of the loop's sessions and backend connections
	sessions      []*session     // every open client of the loop
	idleCheck     int64          // unix ns of the next idle_timeout sweep
	free          []*request     // recycled requests
	freeWork      []*sessionWork // the work of sessions at rest, for the next busy one (work.go)
	freeWorkBytes int            // the buffers they hold
	slotChild     []*request     // fan-out scratch: slot → child request being built (nil between commands)
	rng           *rand.PCG
	elems         [][]byte // merge scratch
	starts        []int    // merge scratch
	pushBuf       []byte   // a RESP3 session's Pub/Sub message being written (pushFrame)

	shardSlotsOf  *topology.Snapshot // snapshot shardSlotsVal was computed for
	shardSlotsVal []int
	pubOf         *topology.Snapshot  // snapshot pubNodes was last updated from
	pubNodes      map[string]*pubNode // Pub/Sub nodes by address (pubSubNode)
	pubList       []*pubNode
	pubLows       []int           // the lowest slot of each shard of pubOf
	spubSticky    map[int]string  // SPUBLISH node by the lowest slot of its shard
	pubExpire     int64           // unix ns when a node that left the map is dropped from pubList
	timeout       int64           // request deadline after arrival, ns
	cmdStats      []cmdStat       // by command index (cmdstats.go)
	unknown       atomic.Uint64   // replies to unknown commands
	errors        errorStats      // error replies by prefix
	bytesIn       atomic.Uint64   // read from clients
	bytesOut      atomic.Uint64   // written to clients
	reads         atomic.Uint64   // client read events handled
	writes        atomic.Uint64   // writes to clients
	now           int64           // unix ns at the start of the loop's current callback: replies' end time
	tlsScratch    tlsloop.Scratch // decrypted input of the loop's TLS clients, for one callback

	wakePending atomic.Bool
	// roundPending: requests that a node's replies let go wait for roundFlush, queued behind the callbacks of
	// this epoll round, so that every client's requests of the round reach that node in one write.
	roundPending bool
	roundFlush   gnet.Runnable
	heldReplies  int // clients whose replies waited for a later flush (flushClients), for tests

	// The loop's tick (Run every tickEvery) is armed only while it has work a tick serves: requests alive
	// (deadlines, retries), replies awaited (stalled connections), paused clients, a drain. An idle loop
	// sleeps; the idle_timeout sweep and a new slot map wake it from OnTick.
	live      int         // requests alive: newRequest minus release; not 0 means busy (even if it went wrong)
	tick      *time.Timer // fires tickFired and wakeNow
	tickArmed bool        // tick is set and has not fired
	tickFired atomic.Bool
}

const (
	tickEvery = 100 * time.Millisecond // Redis's hz 10
	idleSweep = time.Second            // how often idle clients are looked for, and the idle proxy's tick
)

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, slotChild: make([]*request, topology.NumSlots), timeout: s.live.timeout.Load(),
		epfd: epollFD(el), cmdStats: make([]cmdStat, command.Count())}
	l.rng = rand.NewPCG(uint64(time.Now().UnixNano()), uint64(s.nextClientID.Load()))
	l.pool = l.newPool(s.bcfg.Load())
	l.roundFlush = gnet.RunnableFunc(func(context.Context) error {
		defer l.recoverPanic(nil) // it writes clients, as a callback does
		l.roundPending = false
		l.flush()
		return nil
	})
	return l
}

func (l *loop) newPool(cfg *backend.Config) *backend.Pool {
	p := backend.NewPool(l.el, cfg, l.srv.topo, l.srv.log, l.wakeAfter)
	p.Buffers = &l.bufs
	p.Owner = l
	return p
}

// errMaxLeased is the reply to a command that found max_leased_conns connections to addr in use.
func (l *loop) errMaxLeased(addr string) []byte {
	return resp.AppendError(nil, "ERR max_leased_conns ("+strconv.Itoa(l.pool.Config().MaxLeases)+
		") connections to "+addr+" are in use on this event loop")
}

// resp3Pool is the loop's pool of RESP3 connections, made on first use.
func (l *loop) resp3Pool() *backend.Pool {
	p := l.pool3.Load()
	if p == nil {
		p = l.newPool(l.srv.bcfg3.Load())
		l.pool3.Store(p)
	}
	return p
}

// pools are the loop's backend pools. Not for the request path.
func (l *loop) pools() []*backend.Pool {
	p3 := l.pool3.Load()
	if p3 == nil {
		return []*backend.Pool{l.pool}
	}
	return []*backend.Pool{l.pool, p3}
}

// armTick sets the loop's tick to fire in tickEvery unless it is set.
func (l *loop) armTick() {
	if l.tickArmed {
		return
	}
	if l.tick == nil {
		l.tick = time.AfterFunc(tickEvery, func() {
			l.tickFired.Store(true)
			l.wakeNow()
		})
	} else {
		l.tick.Reset(tickEvery)
	}
	l.tickArmed = true
}

// rearm decides the next tick at the end of Run: none while the loop has nothing a tick serves.
func (l *loop) rearm() {
	p3 := l.pool3.Load()
	if l.live != 0 || len(l.paused) > 0 || l.srv.draining.Load() || l.pool.Busy() || p3 != nil && p3.Busy() {
		l.armTick()
	}
}

func (l *loop) wakeAfter(d time.Duration) {
	if d <= 0 {
		l.wakeNow()
		return
	}
	time.AfterFunc(d, l.wakeNow)
}

// wakeNow asks the loop to run Run soon. Safe off-loop; coalesced.
func (l *loop) wakeNow() {
	if l.wakePending.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l); err != nil {
			l.wakePending.Store(false)
		}
	}
}

// Run is the loop's timer work (gnet.Runnable): retries, deadlines, paused clients. It runs on every tick
// and whenever something off the loop wakes it.
func (l *loop) Run(context.Context) error {
	l.wakePending.Store(false)
	if l.tickFired.Swap(false) {
		l.tickArmed = false
	}
	now := time.Now().UnixNano()
	l.now = now
	l.pool.Tick(now)
	if p3 := l.pool3.Load(); p3 != nil {
		p3.Tick(now)
	}
	if idle := l.srv.live.idleTimeout.Load(); idle > 0 && now >= l.idleCheck {
		l.idleCheck = now + int64(time.Second)
		l.closeIdle(now, idle)
	}
	if len(l.paused) > 0 {
		keep := l.paused[:0]
		for _, s := range l.paused {
			if s.paused && !s.tryResume() && !s.checkOutputLimits() {
				keep = append(keep, s)
			} else {
				s.listed = false
			}
		}
		clear(l.paused[len(keep):])
		l.paused = keep
	}
	l.flush()
	if l.srv.draining.Load() {
		l.closeQuiet()
	}
	l.rearm()
	return nil
}

// adopt and forget keep l.sessions, for the idle sweep.
func (l *loop) adopt(s *session) {
	s.idx = int32(len(l.sessions))
	l.sessions = append(l.sessions, s)
}

func (l *loop) forget(s *session) {
	last := len(l.sessions) - 1
	if int(s.idx) > last || l.sessions[s.idx] != s {
		return
	}
	l.sessions[s.idx] = l.sessions[last]
	l.sessions[s.idx].idx = s.idx
	l.sessions[last] = nil
	l.sessions = l.sessions[:last]
}

// closeIdle closes the clients that sent nothing for idle ns and wait for no reply, as Redis's timeout does.
func (l *loop) closeIdle(now, idle int64) {
	for _, s := range l.sessions {
		if now-s.lastActive > idle && s.queueLen() == 0 && s.c.OutboundBuffered() == 0 && !s.closing &&
			!s.subscribed() { // Redis's timeout spares Pub/Sub clients
			l.srv.stats.IdleClosed.Add(1)
			l.srv.log.Debug("closing idle client", "client", s.raddr())
			s.closing = true
			_ = s.c.Close()
		}
	}
}

func (l *loop) touch(s *session) {
	if !s.touched {
		s.touched = true
		l.touched = append(l.touched, s)
	}
}

// flush ends a callback: replies go to their clients, and requests to the backends whose connections are
// ready for the next batch (see backend.Conn's reply-clocked batching).
func (l *loop) flush() {
	l.flushClients(false)
	l.flushBackends()
}

func (l *loop) flushBackends() {
	if l.roundPending {
		l.flushFull()
	} else {
		l.flushPools()
	}
	if l.live != 0 && !l.tickArmed {
		l.armTick()
	}
}

func (l *loop) flushPools() {
	l.pool.Flush()
	if p3 := l.pool3.Load(); p3 != nil {
		p3.Flush()
	}
}

// roundBatch is the batch a node's connection sends at once when its replies let requests go; a smaller one
// waits for the end of the epoll round (roundFlush), gathering what the round's other clients send to that
// node. Over many masters each client's pipeline splits into small batches per node, and writing each at
// once cost more writes per request than the node work it saved (24 masters, GET -P 16: 1.27x the
// throughput with the wait); a large batch leaves at once, so that a node with much to do never idles
// while the round goes on.
const roundBatch = 64

// flushAfterReplies ends a node's callback: replies go to their clients now, and the requests its replies
// let go (reply-clocked batching) now if they are roundBatch or more, or at the end of the epoll round.
func (l *loop) flushAfterReplies() {
	if !l.roundPending && l.flushFull() && l.el.Execute(context.Background(), l.roundFlush) == nil {
		l.roundPending = true
	}
	// While the round's flush is due anyway, a client still waiting for other nodes' replies keeps what this
	// node answered until then: over many masters a 16-deep pipeline is answered by as many callbacks.
	l.flushClients(l.roundPending)
	l.flushBackends()
}

// flushFull writes the connections with roundBatch requests or more waiting, and reports whether others wait.
func (l *loop) flushFull() bool {
	rest := l.pool.FlushFull(roundBatch)
	if p3 := l.pool3.Load(); p3 != nil && p3.FlushFull(roundBatch) {
		rest = true
	}
	return rest
}

// flushClients writes the touched clients' replies. With hold, a client whose queue still waits for replies
// stays touched, its replies kept for a later flush, unless they pass holdOut bytes.
func (l *loop) flushClients(hold bool) {
	kept := 0
	for i := 0; i < len(l.touched); i++ {
		s := l.touched[i]
		l.touched[i] = nil
		if s == nil { // left by a flush that panicked (and was recovered) before this list was cut
			continue
		}
		if hold && s.queueLen() > 0 && s.outLen() < holdOut && !s.closed {
			l.touched[kept] = s
			kept++
			if s.outLen() > 0 {
				l.heldReplies++
			}
			continue
		}
		s.touched = false
		s.flush()
	}
	l.touched = l.touched[:kept]
}

// holdOut bounds the replies a client keeps back for the end of the round.
const holdOut = 16 << 10

func (l *loop) newRequest(s *session) *request {
	var r *request
	if n := len(l.free); n > 0 {
		r = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	} else {
		r = &request{}
	}
	l.live++
	r.sess = s
	r.silent = s.silentNow
	r.cmd, r.start = int(s.curCmd), s.curStart
	r.be.Sink = r
	r.be.Affinity = uint32(s.id)
	return r
}

// release recycles r. The backend and the session must both be done with it.
func (l *loop) release(r *request) {
	l.live--
	for _, c := range r.children {
		l.release(c)
	}
	children := r.children[:0]
	reply := r.reply[:0]
	if cap(reply) > 64<<10 {
		reply = nil // don't keep big replies alive in the free list
	}
	raw := r.be.Raw[:0]
	if cap(raw) > 64<<10 {
		l.bufs.Put(raw) // ignored unless it is a whole buffer of l.bufs (a request that took its Inbox's)
		raw = nil
	}
	order := r.order[:0]
	*r = request{children: children, reply: reply, order: order}
	r.be.Raw = raw
	if len(l.free) < 4096 {
		l.free = append(l.free, r)
	}
}

func (l *loop) randomSlot() int {
	return int(l.rng.Uint64() % topology.NumSlots)
}

// shardSlots returns one slot owned by each shard of snap, in shard order.
func (l *loop) shardSlots(snap *topology.Snapshot) []int {
	if l.shardSlotsOf != snap {
		slots := lowestSlots(snap)
		out := slots[:0]
		for _, slot := range slots {
			if slot >= 0 {
				out = append(out, slot)
			}
		}
		l.shardSlotsOf, l.shardSlotsVal = snap, out
	}
	return l.shardSlotsVal
}

// lowestSlots is the lowest slot of each shard of snap, by shard index; -1 for a shard without slots.
func lowestSlots(snap *topology.Snapshot) []int {
	lows := make([]int, len(snap.Shards))
	for i := range lows {
		lows[i] = -1
	}
	for slot, sh := range snap.Slots {
		if lows[sh] < 0 {
			lows[sh] = slot
		}
	}
	return lows
}

// pubNode is a node Pub/Sub may use, with its weight seed for rendezvous hashing.
type pubNode struct {
	addr  string
	seed  uint64
	shard int   // the lowest slot of the node's shard when it was last in a map
	seen  int64 // unix ns it was last in a map
}

// pubLinger is how long a node that left the map is still chosen for Pub/Sub: a failover drops the demoted
// master from CLUSTER SLOTS for a moment, and moving its channels elsewhere would reorder their messages.
const pubLinger = int64(10 * time.Second)

func (l *loop) refreshPubNodes(snap *topology.Snapshot, now int64) {
	if l.pubOf == snap && now < l.pubExpire {
		return
	}
	if l.pubNodes == nil {
		l.pubNodes = map[string]*pubNode{}
	}
	lows := lowestSlots(snap)
	for si, sh := range snap.Shards {
		for _, ni := range append([]int{sh.Master}, sh.Replicas...) {
			addr := snap.Nodes[ni].Addr
			p := l.pubNodes[addr]
			if p == nil {
				h := fnv.New64a()
				h.Write([]byte(addr))
				p = &pubNode{addr: addr, seed: h.Sum64()}
				l.pubNodes[addr] = p
			}
			p.shard, p.seen = lows[si], now
		}
	}
	l.pubList, l.pubLows, l.pubExpire, l.pubOf = l.pubList[:0], lows, math.MaxInt64, snap
	for addr, p := range l.pubNodes {
		if now-p.seen >= pubLinger {
			delete(l.pubNodes, addr)
			continue
		}
		l.pubList = append(l.pubList, p)
		if p.seen != now {
			l.pubExpire = min(l.pubExpire, p.seen+pubLinger)
		}
	}
}

// publishNode picks the node for PUBLISH to a channel of slot: the highest rendezvous weight among the nodes
// of the map, and those that left it less than pubLinger ago. A node coming or going moves only the channels
// that pick it, and a failover none. While the node chosen has failed in the last pubLinger, "": the request
// goes by its slot, where the pool also resends one the node failed, so that both take the same way (two
// ways would reorder messages).
func (l *loop) publishNode(snap *topology.Snapshot, slot int, now int64) string {
	l.refreshPubNodes(snap, now)
	best, bestW := "", uint64(0)
	for _, n := range l.pubList {
		if w := mix64(n.seed ^ uint64(slot)); best == "" || w > bestW {
			best, bestW = n.addr, w
		}
	}
	if l.pool.FailedWithin(best, now, pubLinger) {
		return ""
	}
	return best
}

// spublishNode picks the node for SPUBLISH to a shard channel of slot: the node subscribers use
// (shardChannelNode) when first asked, then the same node for as long as it stays in the shard and does not
// fail, whatever its role: a failover promotes it and moves nothing.
func (l *loop) spublishNode(snap *topology.Snapshot, slot int, now int64) string {
	l.refreshPubNodes(snap, now)
	low := l.pubLows[snap.Slots[slot]]
	if a, ok := l.spubSticky[low]; ok {
		if p := l.pubNodes[a]; p != nil && p.shard == low && !l.pool.FailedWithin(a, now, pubLinger) {
			return a
		}
	}
	if l.spubSticky == nil {
		l.spubSticky = map[int]string{}
	}
	a := shardChannelNode(snap, slot, func(addr string) bool { return !l.pool.FailedWithin(addr, now, pubLinger) })
	l.spubSticky[low] = a
	return a
}

// mix64 is splitmix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
