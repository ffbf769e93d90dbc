package proxy

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// Transactions. MULTI is answered here and the commands after it are checked as Redis checks them when it
// queues them (unknown, wrong arity, not allowed in a transaction, keys in several slots): a refused one
// gets Redis's error and makes EXEC abort, the others get +QUEUED and are kept. EXEC sends MULTI, the queued
// commands and EXEC together on a connection leased from the slot's master, and the client gets EXEC's reply.
// A transaction whose commands name keys of more than one slot gets Redis Cluster's CROSSSLOT at EXEC.
//
// If the node refused the queued commands because the slot is elsewhere (MOVED, ASK), nothing ran (EXEC
// aborted), so the proxy sends the same transaction to the node named, as it follows redirects of single
// commands. Any other refusal reaches the client as Redis's EXECABORT. EXEC itself is never resent: a
// connection lost after it was written answers "may or may not have run".

// WATCH leases a connection from the master of the watched keys' slot and sends WATCH there, in the
// client's order like EXEC; the session keeps the lease until EXEC (which then runs on it), DISCARD, UNWATCH,
// RESET or the client's end. Keys watched and keys of the transaction must share one slot, as in Redis
// Cluster. A WATCH answered MOVED or ASK is sent to the node named (ASK: after ASKING, and so is the EXEC that
// follows). A transaction refused with a redirect after a WATCH is not resent (the watch stayed behind):
// nothing ran, and EXEC answers the null array of a touched watch.

// watching is a session's WATCH: the lease that holds it.
type watching struct {
	lease  *backend.Lease
	slot   int
	asking bool // the lease's node is importing the slot: EXEC goes after ASKING
	broken bool // the slot moved away since: EXEC answers a null array, as for a touched watch
}

// unwatch forgets the session's WATCH; the connection that held it is closed (its state is not clean).
func (s *session) unwatch() {
	if s.watch != nil {
		s.watch.lease.Close()
		s.watch = nil
	}
}

func cmdUnwatch(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.unwatch()
	s.local(resp.AppendOK(nil))
}

func cmdWatch(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	w := s.work()
	keys := command.ClusterKeyIndexes(cmd, args, w.keys[:0])
	w.keys = keys[:0]
	ks, ok := keysSlot(args, keys)
	slot := int(ks)
	if !ok || s.watch != nil && s.watch.slot != slot {
		s.local(errCrossSlot)
		return
	}
	snap := s.l.pool.Snapshot()
	if snap == nil {
		s.local(errClusterDown)
		return
	}
	x := &execution{sess: s, watchSlot: slot, tx: appendRaw(nil, args, raw)}
	if s.watch != nil {
		x.lease, x.asking = s.watch.lease, s.watch.asking
	}
	s.leased(x, snap.Nodes[snap.MasterOf(uint16(slot))].Addr, slot, now)
}

// transaction is a session's state between MULTI and EXEC or DISCARD.
type transaction struct {
	dirty     bool   // a command was refused while queued: EXEC aborts (Redis's flagTransaction)
	crossSlot bool   // the queued commands' keys are in more than one slot
	slot      int    // the slot of the keys so far; -1 before any
	queued    []byte // MULTI and the commands queued, as RESP
	n         int    // commands queued
}

var (
	respMulti    = resp.AppendCommandStrings(nil, "MULTI")
	respExec     = resp.AppendCommandStrings(nil, "EXEC")
	respAsking   = resp.AppendCommandStrings(nil, "ASKING")
	replyQueued  = resp.AppendSimple(nil, "QUEUED")
	errExecAbort = resp.AppendError(nil, "EXECABORT Transaction discarded because of previous errors.")
)

func cmdMulti(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.tx = &transaction{slot: -1, queued: append([]byte(nil), respMulti...)}
	s.local(resp.AppendOK(nil))
}

func cmdExecWithoutMulti(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendError(nil, "ERR EXEC without MULTI"))
}

func cmdDiscardWithoutMulti(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendError(nil, "ERR DISCARD without MULTI"))
}

// sessionState are commands the proxy answers for the client's own connection: inside a transaction they
// would act on the leased connection instead.
var sessionState = map[string]bool{"hello": true, "auth": true, "select": true, "readonly": true,
	"readwrite": true, "client": true, "subscribe": true, "psubscribe": true, "ssubscribe": true,
	"unsubscribe": true, "punsubscribe": true, "sunsubscribe": true}

// txCommand takes one command of a session in MULTI.
func (s *session) txCommand(cmd *command.Command, st command.Status, args [][]byte, raw []byte, now int64) {
	tx := s.tx
	refuse := func(reply []byte) {
		tx.dirty = true
		s.local(reply)
	}
	switch st {
	case command.Unknown:
		refuse(resp.AppendError(nil, command.UnknownCommandError(args)))
		return
	case command.UnknownSubcommand:
		refuse(resp.AppendError(nil, command.UnknownSubcommandError(args)))
		return
	case command.WrongArity:
		refuse(resp.AppendError(nil, command.ArityError(cmd)))
		return
	}
	name, _, _ := strings.Cut(cmd.Name, "|")
	switch {
	case name == "exec":
		s.exec(now)
		return
	case name == "discard":
		s.tx = nil
		s.unwatch()
		s.local(resp.AppendOK(nil))
		return
	case name == "multi":
		s.local(resp.AppendError(nil, "ERR MULTI calls can not be nested"))
		return
	case name == "watch":
		s.local(resp.AppendError(nil, "ERR WATCH inside MULTI is not allowed"))
		return
	case name == "quit" || name == "reset":
		handlers[cmd.Index](s, cmd, args, raw, now)
		return
	case cmd.Has(command.NoMulti):
		refuse(resp.AppendError(nil, "ERR Command not allowed inside a transaction"))
		return
	case sessionState[name] || notYetSet[name] || notYetSet[cmd.Name]:
		refuse(resp.AppendError(nil, "ERR '"+strings.ToUpper(strings.ReplaceAll(cmd.Name, "|", " "))+
			"' inside MULTI is not supported by the proxy"))
		return
	}
	w := s.work()
	keys := command.ClusterKeyIndexes(cmd, args, w.keys[:0])
	w.keys = keys[:0]
	for i, k := range keys {
		slot := int(topology.Slot(args[k]))
		if i > 0 && slot != int(topology.Slot(args[keys[0]])) {
			refuse(errCrossSlot)
			return
		}
		if tx.slot < 0 {
			tx.slot = slot
		} else if slot != tx.slot {
			tx.crossSlot = true
		}
	}
	if len(raw) > 0 && raw[0] == '*' {
		tx.queued = append(tx.queued, raw...)
	} else {
		tx.queued = resp.AppendCommand(tx.queued, args...)
	}
	tx.n++
	if limit := int(s.l.srv.live.queryLimit.Load()); len(tx.queued) > limit {
		// The queued commands are the client's input the proxy holds: the query buffer limit bounds them.
		s.l.srv.stats.QueryBufferClosed.Add(1)
		s.l.srv.log.Warn("closing client whose transaction passed the query buffer limit", "client", s.raddr(),
			"bytes", len(tx.queued))
		s.tx = nil
		s.closing = true
		_ = s.c.Close()
		return
	}
	s.local(replyQueued)
}

// exec ends the session's transaction: it aborts, or goes to the slot's master.
func (s *session) exec(now int64) {
	tx := s.tx
	s.tx = nil
	w := s.watch
	switch {
	case tx.dirty:
		s.unwatch() // Redis discards the transaction and unwatches
		s.local(errExecAbort)
		return
	case tx.crossSlot, w != nil && tx.slot >= 0 && tx.slot != w.slot:
		s.unwatch()
		s.local(errCrossSlot)
		return
	case w != nil && w.broken:
		s.unwatch()
		s.local(s.appendNullArray(nil))
		return
	}
	slot := tx.slot
	switch {
	case w != nil:
		slot = w.slot
	case slot < 0:
		slot = s.l.randomSlot()
	}
	snap := s.l.pool.Snapshot()
	if snap == nil {
		s.unwatch()
		s.local(errClusterDown)
		return
	}
	x := &execution{sess: s, tx: append(tx.queued, respExec...), n: tx.n, watchSlot: -1}
	if w != nil {
		x.lease, x.asking, x.watched = w.lease, w.asking, true
		s.watch = nil // the EXEC ends the WATCH; the execution holds the lease now
	}
	s.leased(x, snap.Nodes[snap.MasterOf(uint16(slot))].Addr, slot, now)
}

// leased queues x, a WATCH or an EXEC, in the session's order. It runs on a connection of its own: it starts
// once the session's requests before it are answered, and the ones after it wait for its reply, so that it
// runs where it stands in the client's order.
func (s *session) leased(x *execution, addr string, slot int, now int64) {
	r := s.l.newRequest(s)
	r.be.Slot = slot
	r.be.Deadline = now + s.l.timeout
	r.be.Sink = x
	x.r, x.addr = r, addr
	s.hold(r, x)
}

// abandon gives up the WATCH's lease an EXEC took over, for a client that left before its EXEC's turn.
func (x *execution) abandon() {
	if x.lease != nil {
		x.lease.Close()
		x.lease = nil
	}
}

// start sends the transaction, once.
func (x *execution) start() {
	x.r.exec = nil
	x.send(x.addr, x.asking)
}

// execution is one EXEC (or WATCH) on its way: it collects the replies of MULTI, the queued commands and EXEC,
// and gives the client EXEC's.
type execution struct {
	r         *request
	sess      *session
	tx        []byte // MULTI, the queued commands, EXEC; or WATCH
	n         int    // commands queued
	addr      string // the slot's master when EXEC came
	watchSlot int    // a WATCH of this slot; -1 for an EXEC
	watched   bool   // an EXEC after WATCH: on the WATCH's lease, never resent elsewhere
	asking    bool   // sent after ASKING
	lease     *backend.Lease
	queued    int    // replies before EXEC's: MULTI's and one per queued command (ASKING's too, if sent)
	seen      int    // replies so far
	redirect  []byte // the first MOVED or ASK a queued command got
	transient bool   // a queued command was refused for the cluster's state (CLUSTERDOWN, TRYAGAIN ...)
	hops      int
}

// send writes the transaction on a connection leased from addr, after ASKING if asking.
func (x *execution) send(addr string, asking bool) {
	p := x.sess.pool()
	if x.lease == nil {
		x.lease = p.Lease(addr)
	}
	x.asking = asking
	if x.lease == nil {
		x.done(x.sess.l.errMaxLeased(addr))
		return
	}
	x.r.be.Raw = x.r.be.Raw[:0]
	x.queued = x.n + 1 // MULTI's reply and the QUEUED ones
	if x.watchSlot >= 0 {
		x.queued = 0
	}
	if asking {
		x.r.be.Raw = append(x.r.be.Raw, respAsking...)
		x.queued++
	}
	x.r.be.Raw = append(x.r.be.Raw, x.tx...)
	x.r.be.Replies = x.queued + 1
	x.seen, x.redirect, x.transient = 0, nil, false
	x.lease.Send(&x.r.be)
	p.Flush()
}

// Reply takes each reply of the transaction in turn (backend.Sink).
func (x *execution) Reply(be *backend.Request, reply []byte) {
	x.seen++
	if x.seen <= x.queued {
		if resp.IsError(reply) {
			if _, _, ok := backend.Redirection(reply, x.lease.Addr()); ok && x.redirect == nil {
				x.redirect = append([]byte(nil), reply...)
			}
			x.transient = x.transient || transient(reply)
		}
		return
	}
	// Nothing ran if a queued command was refused for where the slot is or for the cluster's state, or if the
	// connection was lost before anything was written (the "unreachable" error).
	notRun := resp.IsError(reply) && (x.redirect != nil || x.transient ||
		be.Lost && bytes.HasPrefix(reply, []byte("-CLUSTERDOWN")))
	if x.watchSlot >= 0 {
		x.watchDone(be, reply)
		return
	}
	from := x.lease.Addr()
	x.lease.Release()
	x.lease = nil
	switch {
	case !notRun || x.r.orphan:
	case x.watched:
		// The watch is void (the slot left the watching node, or the node is gone) and nothing ran: the client
		// hears what Redis says for a touched watch, so that its optimistic loop tries again.
		x.done(x.sess.appendNullArray(nil))
		return
	case x.redirect != nil && x.hops < x.sess.l.srv.bcfg.Load().MaxRedirects:
		// The node took none of it (EXECABORT): send the same transaction where the slot is.
		if addr, ask, ok := backend.Redirection(x.redirect, from); ok {
			x.hops++
			if !ask {
				x.sess.l.srv.topo.RequestRefresh()
			}
			x.send(addr, ask)
			return
		}
	case x.redirect == nil && time.Now().UnixNano() < x.r.be.Deadline:
		x.retryLater()
		return
	}
	x.done(reply)
}

// retryLater sends the transaction (or the first WATCH) again after a backoff, to the slot's master then: the
// node was unreachable or refused it for the cluster's state (a failover under way), and nothing ran.
func (x *execution) retryLater() {
	l := x.sess.l
	l.srv.topo.RequestRefresh()
	time.AfterFunc(max(l.srv.bcfg.Load().RetryBackoffMax, 10*time.Millisecond), func() {
		_ = l.el.Execute(context.Background(), runnable(func() {
			snap := l.pool.Snapshot()
			switch {
			case x.r.orphan:
				x.done(resp.AppendNullArray(nil))
			case snap == nil:
				x.done(errClusterDown)
			default:
				x.send(snap.Nodes[snap.MasterOf(uint16(x.r.be.Slot))].Addr, false)
			}
			l.flush()
		}))
	})
}

// watchDone takes a WATCH's reply: the session watches on the lease, or the WATCH goes where the slot is.
func (x *execution) watchDone(be *backend.Request, reply []byte) {
	s := x.sess
	if x.r.orphan {
		x.lease.Close()
		x.done(reply)
		return
	}
	if s.watch == nil && resp.IsError(reply) && (transient(reply) || be.Lost) &&
		time.Now().UnixNano() < x.r.be.Deadline {
		// A first WATCH has no effect to fear: it waits out a failover like any command.
		x.lease.Close()
		x.lease = nil
		x.retryLater()
		return
	}
	if _, _, ok := backend.Redirection(reply, x.lease.Addr()); ok && s.watch != nil {
		// The slot left the node that holds the earlier WATCH: its keys were migrated away, which touches
		// them, so EXEC will answer as Redis does for a touched watch.
		s.watch.broken = true
		x.lease = nil
		x.done(resp.AppendOK(nil))
		return
	}
	if addr, ask, ok := backend.Redirection(reply, x.lease.Addr()); ok && x.hops < s.l.srv.bcfg.Load().MaxRedirects {
		x.hops++
		x.lease.Close()
		x.lease = nil
		if !ask {
			s.l.srv.topo.RequestRefresh()
		}
		x.send(addr, ask)
		return
	}
	switch {
	case !resp.IsError(reply):
		s.watch = &watching{lease: x.lease, slot: x.watchSlot, asking: x.asking}
	case s.watch == nil: // a first WATCH that failed holds nothing
		x.lease.Close()
	}
	x.lease = nil
	x.done(reply)
}

// done gives the client EXEC's reply and lets the commands after it go.
func (x *execution) done(reply []byte) {
	s := x.sess
	x.r.Reply(&x.r.be, reply)
	s.resumeAfterHeld()
}
