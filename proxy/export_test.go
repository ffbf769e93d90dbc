package proxy

import "unsafe"

// SessionSize is the bytes of one client's session: the proxy's own share of every connection.
const SessionSize = unsafe.Sizeof(session{})

// LoopTicks reports, for each event loop that has run, how many requests it holds alive and whether its
// tick is set.
func LoopTicks(s *Server) (live []int, armed []bool) {
	for _, st := range onEachLoop(s, func(l *loop) [2]int {
		a := 0
		if l.tickArmed {
			a = 1
		}
		return [2]int{l.live, a}
	}) {
		live, armed = append(live, st[0]), append(armed, st[1] == 1)
	}
	return live, armed
}

// WorkKept is what SessionWork reports.
type WorkKept struct {
	Busy     []int64 // clients whose session holds its work
	Free     []int   // works kept for the next busy session, per loop
	MaxOut   int     // the largest reply buffer a kept work holds
	MaxQueue int     // the most request slots a kept work's queue holds
	MaxBytes int     // the most bytes of buffers one loop's kept works hold
}

// SessionWork reports, over every loop that has run, which sessions hold their work and what the loops keep.
func SessionWork(s *Server) WorkKept {
	var k WorkKept
	for _, st := range onEachLoop(s, func(l *loop) WorkKept {
		var lk WorkKept
		for _, sess := range l.sessions {
			if sess.w != nil {
				lk.Busy = append(lk.Busy, sess.id)
			}
		}
		lk.Free, lk.MaxBytes = []int{len(l.freeWork)}, l.freeWorkBytes
		for _, w := range l.freeWork {
			lk.MaxOut = max(lk.MaxOut, cap(w.out))
			lk.MaxQueue = max(lk.MaxQueue, w.queue.Cap())
		}
		return lk
	}) {
		k.Busy = append(k.Busy, st.Busy...)
		k.Free = append(k.Free, st.Free...)
		k.MaxOut, k.MaxQueue = max(k.MaxOut, st.MaxOut), max(k.MaxQueue, st.MaxQueue)
		k.MaxBytes = max(k.MaxBytes, st.MaxBytes)
	}
	return k
}

// HoldOut is the most a client's replies may hold back for the round's flush.
const HoldOut = holdOut

// HeldReplies counts, over every loop that has run, the times a client's replies waited for a later flush.
func HeldReplies(s *Server) (n int) {
	for _, h := range onEachLoop(s, func(l *loop) int { return l.heldReplies }) {
		n += h
	}
	return n
}
