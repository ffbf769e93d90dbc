package proxy

import (
	"math"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/internal/tlsloop"
	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/resp"
)

const (
	// maxQueued bounds the requests one client may have in flight (see window in backpressure.go).
	maxQueued = 4096
	// donateMin is the request size from which a forward keeps the bytes it was parsed from instead of a copy.
	donateMin = 64 << 10
	// bigReply is the reply size from which a reply is written from where it lies rather than copied.
	bigReply = 64 << 10
)

// session is one client connection. Owned by its loop.
type session struct {
	l  *loop
	c  gnet.Conn // the client's connection; for a TLS client its *tlsloop.Conn (plaintext in, encrypted out)
	id int64
	w  *sessionWork // while the client has a request or a reply under way; nil at rest (work.go)

	// Every byte here is paid once per connection, most of them idle (160 bytes: TestRestingClientHeap).
	idx        int32 // position in l.sessions
	avgReply   int32 // running mean of the client's reply sizes
	lastActive int64 // unix ns of the last bytes from the client, for idle_timeout
	queued     int   // bytes of finished replies waiting in queue behind an unfinished request
	softSince  int64 // unix ns since output has been over the soft limit; 0 when under

	resp3  bool // HELLO 3: replies in RESP3
	ownRaw bool // the request being dispatched lies in in's memory, which it may take
	// rawAtStart: and it starts that memory, so it can go back to l.bufs when done
	rawAtStart bool
	held       bool // a WATCH, EXEC or blocking command is in flight: later commands wait for it, as in Redis
	replyOff   bool // CLIENT REPLY OFF
	skipNext   bool // CLIENT REPLY SKIP: the next command gets no reply
	silentNow  bool // the command being dispatched gets no reply (either of the above)
	authed     bool // authenticated as user
	gated      bool // not authenticated, or user is restricted: dispatch checks each command
	touched    bool // in l.touched
	paused     bool // stopped parsing at a limit (backpressure.go)
	readOff    bool // read interest taken out of the loop's epoll set while paused
	listed     bool // in l.paused
	closed     bool // OnClose ran; late replies are dropped
	closing    bool // QUIT or a protocol error: close once the queue drained
	killed     bool // CLIENT KILL: no longer listed or killed again while gnet closes it

	tx      *transaction // between MULTI and EXEC or DISCARD
	watch   *watching    // after WATCH, until EXEC, DISCARD, UNWATCH or RESET
	blocked *blockedOp   // a blocking command, from its turn until its reply (blocking.go)
	ps      *pubsub      // subscriptions (pubsub.go); nil before the first

	curCmd    int32 // the command being dispatched: its index, -1 if unknown (cmdstats.go)
	inCounted int32 // bytes left in gnet's buffer after the last callback, already counted in l.bytesIn (≤ 1gb)
	curStart  int64 // when the command being dispatched was parsed

	user *acl.User // the user the session runs as (auth.go); before AUTH, the default user

	names   *clientNames // nil until a name is set
	created int64        // unix ns
}

// clientNames are CLIENT SETNAME's and SETINFO's, apart from the session: most clients of an application
// never set one (go-redis does), and every byte of a session is paid once per connection.
type clientNames struct {
	name, libName, libVer string
}

var noNames clientNames

// named is the session's names, empty ones if none was set.
func (s *session) named() *clientNames {
	if s.names == nil {
		return &noNames
	}
	return s.names
}

// naming is the session's names, to set one.
func (s *session) naming() *clientNames {
	if s.names == nil {
		s.names = &clientNames{}
	}
	return s.names
}

// raddr is the client's address, for logs and CLIENT LIST (made on each call: a session keeps no copy).
func (s *session) raddr() string {
	if s.c == nil { // the sessions that describe commands (commandsTable) have no connection
		return ""
	}
	if a := s.c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// pool is the loop's pool of the session's protocol: l.pool, or l.resp3Pool() after HELLO 3.
func (s *session) pool() *backend.Pool {
	if s.resp3 {
		return s.l.resp3Pool()
	}
	return s.l.pool
}

// tlsConn is the TLS layer of a client of the TLS listener; nil for plain TCP.
func (s *session) tlsConn() *tlsloop.Conn {
	tc, _ := s.c.(*tlsloop.Conn)
	return tc
}

func newSession(l *loop, c gnet.Conn, id int64) *session {
	s := &session{l: l, c: c, id: id, created: time.Now().UnixNano()}
	s.lastActive = s.created
	s.avgReply = firstReplyGuess
	s.initAuth()
	return s
}

func (s *session) onTraffic() {
	c := s.c
	if s.closing {
		if s.w != nil {
			s.w.in.Reset()
		}
		_, _ = c.Discard(-1)
		return
	}
	w := s.work()
	if buffered := w.in.Buffered(c); buffered > int(s.l.srv.live.queryLimit.Load()) {
		s.l.srv.stats.QueryBufferClosed.Add(1)
		s.l.srv.log.Warn("closing client that reached max query buffer length", "client", s.raddr(), "bytes", buffered)
		_ = c.Close()
		s.closing = true
		return
	}
	now := time.Now().UnixNano()
	s.l.now = now
	s.lastActive = now
	if s.paused || s.held {
		s.stopReading() // gnet re-armed reading
		return
	}
	buf, ok := w.in.Bytes(c, w.parser.Need())
	if !ok {
		return
	}
	off := 0
	for off < len(buf) && !s.held {
		if s.overLimits() {
			s.pause()
			break
		}
		args, n, err := w.parser.Parse(buf[off:])
		if err != nil {
			s.l.srv.stats.ProtocolErrors.Add(1)
			s.local(resp.AppendError(nil, "ERR "+err.Error()))
			s.closing = true
			off = len(buf)
			break
		}
		if n == 0 {
			break
		}
		raw := buf[off : off+n]
		s.rawAtStart = off == 0
		off += n
		if len(args) == 0 {
			continue
		}
		// A request that spanned reads is in memory of its own: a forward may keep it instead of a copy.
		s.ownRaw = n >= donateMin && w.in.Len() > 0
		s.dispatch(args, raw, now)
		s.ownRaw, s.silentNow = false, false
		if s.closing {
			off = len(buf)
			break
		}
	}
	w.in.Done(c, buf, off)
	s.l.touch(s)
}

func (s *session) onClose() {
	s.closed = true
	s.l.forget(s)
	// Requests still at backends come back through request.finish, which sees closed and recycles them.
	for s.queueLen() > 0 {
		r := s.w.queue.Pop()
		if r.exec != nil { // an EXEC, WATCH or blocking command not started is nowhere else
			r.exec.abandon()
		}
		if r.done || r.exec != nil {
			s.l.release(r)
		} else {
			r.orphan = true
		}
	}
	// Only now: ending these may answer their requests at once, which must then be orphans, recycled once.
	s.unwatch()
	if s.blocked != nil {
		s.blocked.clientGone()
	}
	if s.ps != nil {
		s.ps.closeAll()
	}
	if w := s.w; w != nil {
		s.w = nil
		s.l.putWork(w)
	}
}

// flush writes the replies gathered in this callback with one write.
func (s *session) flush() {
	if s.closed {
		return
	}
	if w := s.w; w != nil && len(w.out) > 0 {
		s.l.bytesOut.Add(uint64(len(w.out)))
		s.l.writes.Add(1)
		_, _ = s.c.Write(w.out)
		w.out = w.out[:0]
		if cap(w.out) > 1<<20 {
			w.out = nil
		}
	}
	if s.closing && s.queueLen() == 0 {
		_ = s.c.Close()
	}
	if s.checkOutputLimits() {
		return
	}
	if s.paused {
		s.tryResume()
	}
	s.rest()
}

// emit adds a reply to this callback's output. A large reply is written at once, with what precedes it, from
// where it lies (gnet copies what the socket does not take), instead of being copied into out first.
func (s *session) emit(reply []byte) {
	w := s.work()
	if len(reply) < bigReply {
		w.out = append(w.out, reply...)
		return
	}
	s.l.bytesOut.Add(uint64(len(w.out) + len(reply)))
	s.l.writes.Add(1)
	if len(w.out) == 0 {
		_, _ = s.c.Write(reply)
		return
	}
	iov := [2][]byte{w.out, reply}
	_, _ = s.c.Writev(iov[:])
	w.out = w.out[:0]
}

// local queues a reply computed by the proxy itself, in order with the forwarded ones.
func (s *session) local(reply []byte) {
	o := outcomeOK
	if len(reply) > 0 && reply[0] == '-' {
		o = outcomeRejected
		s.l.errors.count(reply)
	}
	s.l.record(int(s.curCmd), s.curStart, o)
	w := s.work()
	if d := s.l.now - s.curStart; s.l.slow(int(s.curCmd), d) {
		s.logSlow(w.curArgs, len(w.curArgs), d)
	}
	if s.silentNow {
		return
	}
	if w.queue.Len() == 0 {
		w.out = append(w.out, reply...)
		return
	}
	r := s.l.newRequest(s)
	r.reply = append(r.reply[:0], reply...)
	r.done = true
	s.queued += len(reply)
	w.queue.Push(r)
}

// send queues r in order and hands it to the backend.
func (s *session) send(r *request) {
	s.work().queue.Push(r)
	s.pool().Send(&r.be)
}

// request is one client command in flight, or one part of a split multi-key command.
type request struct {
	be       backend.Request
	sess     *session
	reply    []byte // the finished reply while it waits behind earlier ones
	done     bool
	orphan   bool // its session closed; recycle when the backend returns it
	parent   *request
	children []*request
	pending  int // children still waiting
	merge    mergeKind
	order    []uint32 // MGET: for each key, the child holding its value
	exec     heldOp   // an EXEC, WATCH or blocking command waiting for the requests before it
	silent   bool     // CLIENT REPLY OFF or SKIP: the reply is dropped when its turn comes
	cmd      int      // the command's index, for its statistics; -1: unknown
	start    int64    // unix ns when the command was parsed
}

// heldOp is a command that runs on a leased connection once the session's requests before it are answered.
type heldOp interface {
	start()
	abandon() // the client left before its turn
}

// hold queues r for op, which starts once the session's requests before it are answered; the commands after
// it wait for its reply, so that it runs where it stands in the client's order.
func (s *session) hold(r *request, op heldOp) {
	s.held = true
	empty := s.queueLen() == 0
	s.work().queue.Push(r)
	if empty {
		op.start()
	} else {
		r.exec = op
	}
}

// resumeAfterHeld lets the commands that waited behind a held command go.
func (s *session) resumeAfterHeld() {
	if s.held && !s.closed {
		s.held = false
		s.startReading()
		_ = s.c.Wake(nil) // parse what waits in the Inbox and in gnet
	}
}

// Reply is the backend's delivery (backend.Sink).
func (r *request) Reply(_ *backend.Request, reply []byte) {
	if p := r.parent; p != nil {
		r.reply = append(r.reply[:0], reply...)
		r.done = true
		p.pending--
		if p.pending == 0 {
			p.finish(p.merged())
		}
		return
	}
	r.finish(reply)
}

// finish puts r's reply in the session's output: straight away if r is the oldest request, else in r until
// the ones before it are done.
func (r *request) finish(reply []byte) {
	s := r.sess
	l := s.l
	if r.orphan || s.closed {
		l.release(r)
		return
	}
	l.record(r.cmd, r.start, r.outcome(reply))
	if len(reply) > 0 && reply[0] == '-' {
		l.errors.count(reply)
	}
	if d := l.now - r.start; l.slow(r.cmd, d) {
		r.logSlowRequest(d)
	}
	s.avgReply += int32((min(len(reply), math.MaxInt32) - int(s.avgReply)) / 8)
	w := s.w
	if w == nil || w.queue.Len() == 0 || w.queue.At(0) != r {
		r.reply = append(r.reply[:0], reply...)
		r.done = true
		s.queued += len(reply)
		return
	}
	if !r.silent {
		s.emit(reply)
	}
	w.queue.Pop()
	l.release(r)
	for w.queue.Len() > 0 && w.queue.At(0).done {
		h := w.queue.Pop()
		s.queued -= len(h.reply)
		if !h.silent {
			s.emit(h.reply)
		}
		l.release(h)
	}
	if w.queue.Len() > 0 && w.queue.At(0).exec != nil {
		w.queue.At(0).exec.start()
	}
	l.touch(s)
}
