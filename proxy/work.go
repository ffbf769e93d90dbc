package proxy

import (
	"github.com/slotproxy/slotproxy/internal/inbox"
	"github.com/slotproxy/slotproxy/internal/ring"
	"github.com/slotproxy/slotproxy/resp"
)

// sessionWork is what a session needs only while it has a request or a reply under way: the parser, the
// bytes of a request that spans reads, the requests awaiting replies, the replies to write. Most connections
// of a large fleet are idle most of the time; at rest a session hands its work back to the loop, and its
// buffers with it, so that memory follows the clients that are busy, not every client connected.
type sessionWork struct {
	parser  resp.CommandParser
	in      inbox.Inbox         // bytes of a request that spans reads
	queue   ring.Ring[*request] // requests in arrival order; replies leave from the front only
	out     []byte              // replies ready to write at the end of the callback
	keys    []int               // scratch for key positions
	curArgs [][]byte            // the arguments of the command being dispatched, valid while it is
	kept    int                 // bytes of buffers it holds while in the loop's free list
}

// Bounds on what a resting session's work keeps for the next one: one large reply or a command of many keys
// must not pin its memory in the loop's free list, nor many of them together.
const (
	workKeepOut   = bigReply // a reply up to this size is gathered in out; keeping out spares a new one
	workKeepSlots = 1 << 10  // queue slots, key positions
	workKeepBytes = 4 << 20  // buffers kept by a loop's free works in all
	workFreeMax   = 1 << 10  // works kept per loop
)

// work is s's work, taken from the loop's free list if s was at rest.
func (s *session) work() *sessionWork {
	if s.w != nil {
		return s.w
	}
	l := s.l
	var w *sessionWork
	if n := len(l.freeWork); n > 0 {
		w = l.freeWork[n-1]
		l.freeWork[n-1] = nil
		l.freeWork = l.freeWork[:n-1]
		l.freeWorkBytes -= w.kept
	} else {
		w = &sessionWork{}
		w.in.Buffers = &l.bufs
	}
	w.parser.Unauthenticated = !s.authed
	s.w = w
	return w
}

// rest hands s's work back to the loop if nothing is under way: no request awaiting its reply, no reply or
// request byte buffered, nothing that answers later on its own (a subscription, a transaction, a held or
// blocking command, a pause).
func (s *session) rest() {
	w := s.w
	if w == nil || w.queue.Len() > 0 || len(w.out) > 0 || w.in.Len() > 0 || s.held || s.paused || s.closing ||
		s.touched || s.tx != nil || s.subscribed() || s.blocked != nil || (s.c != nil && s.c.InboundBuffered() > 0) {
		return
	}
	s.w = nil
	s.l.putWork(w)
}

func (l *loop) putWork(w *sessionWork) {
	if len(l.freeWork) >= workFreeMax {
		w.in.Release(0) // the rest goes with w
		return
	}
	w.parser.Reset()
	w.parser.Forget()
	w.queue.Shrink(workKeepSlots)
	if cap(w.out) > workKeepOut {
		w.out = nil
	}
	w.out = w.out[:0]
	if cap(w.keys) > workKeepSlots {
		w.keys = nil
	}
	w.curArgs = nil
	w.in.Release(workKeepOut)
	w.kept = cap(w.out) + w.in.Cap() + w.parser.ScratchBytes() + 8*(w.queue.Cap()+cap(w.keys))
	if l.freeWorkBytes+w.kept > workKeepBytes {
		in := w.in
		in.Release(0)
		*w = sessionWork{in: in}
	}
	l.freeWorkBytes += w.kept
	l.freeWork = append(l.freeWork, w)
}

// queueLen is the number of s's requests awaiting or holding their replies.
func (s *session) queueLen() int {
	if s.w == nil {
		return 0
	}
	return s.w.queue.Len()
}

// outLen is the bytes of replies s has ready to write.
func (s *session) outLen() int {
	if s.w == nil {
		return 0
	}
	return len(s.w.out)
}
