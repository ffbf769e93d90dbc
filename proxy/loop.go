package proxy

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/internal/inbox"
	"github.com/slotproxy/slotproxy/topology"
)

// loop is the state of one gnet event loop. Every field is owned by that loop's goroutine, except
// wakePending (atomic).
type loop struct {
	srv  *Server
	el   gnet.EventLoop
	pool *backend.Pool

	touched   []*session    // sessions with replies to write at the end of this callback
	paused    []*session    // sessions that stopped reading at a limit; retried on every tick
	epfd      int           // the loop's epoll descriptor, for pausing reads; -1 if unknown
	bufs      inbox.Buffers // large buffers of the loop's sessions and backend connections
	sessions  []*session    // every open client of the loop
	idleCheck int64         // unix ns of the next idle_timeout sweep
	free      []*request    // recycled requests
	slotChild []*request    // fan-out scratch: slot → child request being built (nil between commands)
	rng       *rand.PCG
	elems     [][]byte // merge scratch
	starts    []int    // merge scratch

	shardSlotsOf  *topology.Snapshot // snapshot shardSlotsVal was computed for
	shardSlotsVal []int
	timeout       int64 // request deadline after arrival, ns

	wakePending   atomic.Bool
	flushQueued   bool          // a flushTask is queued on the loop
	flushRunnable gnet.Runnable // l.flushTask, allocated once
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, slotChild: make([]*request, topology.NumSlots), timeout: int64(s.cfg.Timeout.D()),
		epfd: epollFD(el)}
	l.rng = rand.NewPCG(uint64(time.Now().UnixNano()), uint64(s.nextClientID.Load()))
	l.pool = backend.NewPool(el, &s.bcfg, s.topo, s.log, l.wakeAfter)
	l.pool.Buffers = &l.bufs
	l.pool.Owner = l
	return l
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

// Run is the loop's timer work (gnet.Runnable): retries, deadlines, paused clients.
func (l *loop) Run(context.Context) error {
	l.wakePending.Store(false)
	now := time.Now().UnixNano()
	l.pool.Tick(now)
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
	return nil
}

// adopt and forget keep l.sessions, for the idle sweep.
func (l *loop) adopt(s *session) {
	s.idx = len(l.sessions)
	l.sessions = append(l.sessions, s)
}

func (l *loop) forget(s *session) {
	last := len(l.sessions) - 1
	if s.idx > last || l.sessions[s.idx] != s {
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
		if now-s.lastActive > idle && s.queue.Len() == 0 && s.c.OutboundBuffered() == 0 && !s.closing {
			l.srv.stats.IdleClosed.Add(1)
			l.srv.log.Debug("closing idle client", "client", s.raddr)
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
	l.flushClients()
	l.pool.Flush()
}

func (l *loop) flushClients() {
	for i := 0; i < len(l.touched); i++ {
		s := l.touched[i]
		l.touched[i] = nil
		s.touched = false
		s.flush()
	}
	l.touched = l.touched[:0]
}

func (l *loop) newRequest(s *session) *request {
	var r *request
	if n := len(l.free); n > 0 {
		r = l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
	} else {
		r = &request{}
	}
	r.sess = s
	r.silent = s.silentNow
	r.be.Sink = r
	r.be.Affinity = uint32(s.id)
	return r
}

// release recycles r. The backend and the session must both be done with it.
func (l *loop) release(r *request) {
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
		slots := make([]int, len(snap.Shards))
		for i := range slots {
			slots[i] = -1
		}
		for slot, sh := range snap.Slots {
			if slots[sh] < 0 {
				slots[sh] = slot
			}
		}
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
