package proxy

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// WAIT numreplicas timeout. Redis counts the replicas that acknowledged the connection's own writes; a
// client's writes through the proxy travel on connections shared with other clients, to several masters, so
// the proxy counts differently, to the same guarantee: when WAIT starts (after the client's earlier commands
// were answered), it reads every master's replication offset (INFO replication), then asks again every
// waitPoll until, on every master, at least numreplicas online replicas acknowledged that offset, or the
// timeout passes (0: none). The answer is the smallest count over the masters: every write the client made
// before WAIT, on whatever shard, is on at least that many replicas. Replicas acknowledge once a second
// unless a WAIT on the master asks them sooner, so a WAIT through the proxy takes up to about a second
// where Redis answers in a round trip, and the offset read may be past the client's own writes (other
// clients', replication pings): with a timeout under a second the count can be lower than Redis's, never
// higher. The client's later commands wait for it, as in Redis.

const waitPoll = 50 * time.Millisecond

type waitOp struct {
	r        *request
	sess     *session
	want     int64
	until    int64 // unix ns; 0: no timeout
	slots    []int // one slot of each shard, whose master is asked
	targets  []int64
	calls    []waitCall
	pending  int
	acked    int64 // the smallest count of the last round
	sentOnce bool  // the offsets are read; later rounds count acknowledgements
	over     bool  // answered
}

type waitCall struct {
	be backend.Request
	w  *waitOp
	i  int
}

func cmdWait(s *session, _ *command.Command, args [][]byte, _ []byte, now int64) {
	want, err := strconv.ParseInt(string(args[1]), 10, 64)
	if err != nil {
		s.local(errNotInteger)
		return
	}
	ms, err := strconv.ParseInt(string(args[2]), 10, 64)
	switch {
	case err != nil:
		s.local(resp.AppendError(nil, "ERR timeout is not an integer or out of range"))
		return
	case ms < 0:
		s.local(resp.AppendError(nil, "ERR timeout is negative"))
		return
	}
	w := &waitOp{sess: s, want: want}
	if ms > 0 {
		w.until = now + ms*int64(time.Millisecond)
	}
	w.r = s.l.newRequest(s)
	s.hold(w.r, w)
}

func (w *waitOp) abandon() {}

// start reads the masters' offsets, once the client's earlier commands are answered.
func (w *waitOp) start() {
	w.r.exec = nil
	if w.until > 0 && w.until < time.Now().UnixNano() {
		w.until = time.Now().UnixNano() // the timeout ran while earlier commands were answered: one round
	}
	snap := w.sess.l.pool.Snapshot()
	if snap == nil {
		w.done(errClusterDown)
		return
	}
	w.slots = append([]int(nil), w.sess.l.shardSlots(snap)...)
	w.targets = make([]int64, len(w.slots))
	w.calls = make([]waitCall, len(w.slots))
	w.round()
}

var respInfoReplication = resp.AppendCommandStrings(nil, "INFO", "replication")

// round sends INFO replication to every master.
func (w *waitOp) round() {
	l := w.sess.l
	now := time.Now().UnixNano()
	w.pending = len(w.calls)
	for i := range w.calls {
		c := &w.calls[i]
		*c = waitCall{w: w, i: i}
		c.be.Raw, c.be.Slot, c.be.Sink = respInfoReplication, w.slots[i], c
		c.be.Deadline, c.be.Idempotent = now+l.timeout, true
	}
	for i := range w.calls {
		l.pool.Send(&w.calls[i].be)
	}
	l.pool.Flush()
}

func (c *waitCall) Reply(_ *backend.Request, reply []byte) {
	w := c.w
	if w.over {
		return
	}
	text, ok := infoText(reply)
	if !ok {
		w.fail(reply)
		return
	}
	if !w.sentOnce {
		w.targets[c.i] = infoInt(text, "master_repl_offset")
	} else {
		n := ackedReplicas(text, w.targets[c.i])
		if c.i == 0 || n < w.acked {
			w.acked = n
		}
	}
	if w.pending--; w.pending > 0 {
		return
	}
	if !w.sentOnce {
		w.sentOnce = true
		w.round()
		return
	}
	now := time.Now().UnixNano()
	if w.acked >= w.want || w.until > 0 && now >= w.until || w.sess.closed {
		w.done(resp.AppendInt(nil, w.acked))
		return
	}
	l := w.sess.l
	time.AfterFunc(waitPoll, func() {
		_ = l.el.Execute(context.Background(), runnable(func() {
			if w.sess.closed {
				w.done(resp.AppendInt(nil, w.acked))
				return
			}
			w.round()
		}))
	})
}

// fail answers the first error a master gave, as Redis would fail the command.
func (w *waitOp) fail(reply []byte) {
	if !resp.IsError(reply) {
		reply = resp.AppendError(nil, "ERR unexpected INFO reply from a master")
	}
	w.done(reply)
}

func (w *waitOp) done(reply []byte) {
	if w.over {
		return
	}
	w.over = true
	w.r.Reply(&w.r.be, reply)
	w.sess.resumeAfterHeld()
}

// infoInt is the integer field name of an INFO text; 0 if absent.
func infoInt(text []byte, name string) int64 {
	v, _ := infoValue(text, name)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// ackedReplicas counts the online replicas of an INFO replication text that acknowledged offset.
func ackedReplicas(text []byte, offset int64) int64 {
	var n int64
	for line := range bytes.Lines(text) {
		if !bytes.HasPrefix(line, []byte("slave")) || !bytes.Contains(line, []byte("state=online")) {
			continue
		}
		_, rest, ok := bytes.Cut(line, []byte("offset="))
		if !ok {
			continue
		}
		v, _, _ := bytes.Cut(rest, []byte(","))
		if off, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64); err == nil && off >= offset {
			n++
		}
	}
	return n
}
