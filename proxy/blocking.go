package proxy

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP, XREAD and
// XREADGROUP with BLOCK) run on a connection leased from the slot's master, never on a shared pipeline: a
// blocked client holds only its own lease. The command goes out with CLIENT ID before it, so the proxy knows
// the node's name for that connection. The client's later commands wait behind it, as they do in Redis.
//
// Its deadline is the command's own timeout plus the proxy's request timeout (none for timeout 0). The node
// answers the timeout itself. When the node gives the command up without running it (a MOVED or ASK after
// the slot moved, UNBLOCKED when the master became a replica, CLUSTERDOWN, TRYAGAIN, LOADING) or the
// connection is lost, the command is sent again where the slot is now, with what remains of its timeout; a
// reply with an element is never resent.
//
// A client that leaves while blocked: the proxy sends CLIENT UNBLOCK for the leased connection from another
// one, so the node ends the wait at once. If the node had popped an element for the client in the meantime,
// the proxy puts it back where it was taken from: LPUSH or RPUSH at the end it was popped from (BLPOP, BRPOP,
// BLMPOP), ZADD with its score (BZPOPMIN, BZPOPMAX, BZMPOP), and for BLMOVE and BRPOPLPUSH a script that
// takes the element off the end of the destination it was pushed to and pushes it back onto the source's end.
// XREAD pops nothing; entries XREADGROUP delivered stay in the group's pending list, as when a Redis client
// dies after reading them (XCLAIM or XAUTOCLAIM hands them to another consumer).

// blockedOp is one blocking command of a session, from its turn in the client's order to its reply.
type blockedOp struct {
	r      *request
	sess   *session
	name   string
	args   [][]byte // the command, copied: it is sent again after a redirect
	slot   int
	tArg   int   // index of the timeout argument; -1 if it does not parse (the node answers the error)
	tMS    bool  // the timeout is in milliseconds (XREAD BLOCK), else in seconds
	until  int64 // unix ns when the command's own timeout ends; 0 for none
	addr   string
	lease  *backend.Lease
	asking bool
	nodeID int64 // the leased connection's CLIENT ID on the node; 0 unknown
	seen   int   // replies of the current send
	sentAt int64
	hops   int   // redirects in a row
	errAt  int64 // unix ns of the first transient error of a row; 0 when none
	gone   bool  // the client left: unblock, and put back what the node pops
	ended  bool  // the client has its reply
}

var respClientID = resp.AppendCommandStrings(nil, "CLIENT", "ID")

// block starts a blocking command in the session's order.
func (s *session) block(cmd *command.Command, args [][]byte, raw []byte, now int64) {
	w := s.work()
	keys := command.ClusterKeyIndexes(cmd, args, w.keys[:0])
	w.keys = keys[:0]
	if len(keys) == 0 {
		// Arguments Redis rejects (a bad key count): any master answers with its error.
		s.forwardSlot(cmd, args, raw, s.l.randomSlot(), now)
		return
	}
	slot, ok := keysSlot(args, keys)
	if !ok {
		s.local(errCrossSlot)
		return
	}
	b := &blockedOp{sess: s, name: cmd.Name, slot: int(slot), tArg: -1}
	b.args = make([][]byte, len(args))
	for i, a := range args {
		b.args[i] = bytes.Clone(a)
	}
	b.findTimeout(now)
	r := s.l.newRequest(s)
	r.be.Slot = b.slot
	r.be.Sink = b
	r.be.Replies = 2
	b.r = r
	s.blocked = b
	s.l.srv.stats.Blocked.Add(1)
	s.hold(r, b)
}

// abandon: the client left before the command's turn; nothing was sent.
func (b *blockedOp) abandon() {
	b.ended, b.gone = true, true
	b.sess.l.srv.stats.Blocked.Add(-1)
	if b.sess.blocked == b {
		b.sess.blocked = nil
	}
}

// findTimeout locates and reads the timeout argument as Redis does; a value Redis rejects leaves tArg -1.
func (b *blockedOp) findTimeout(now int64) {
	i := len(b.args) - 1 // BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMOVE, BRPOPLPUSH
	switch b.name {
	case "blmpop", "bzmpop":
		i = 1
	case "xread", "xreadgroup":
		i = -1
		for j := 1; j+1 < len(b.args); j++ {
			if bytes.EqualFold(b.args[j], []byte("streams")) {
				break
			}
			if bytes.EqualFold(b.args[j], []byte("block")) {
				i = j + 1
			}
		}
		b.tMS = true
	}
	if i < 0 {
		return
	}
	var d float64
	var ok bool
	if b.tMS {
		var n int64
		n, ok = resp.ParseDecimal(b.args[i])
		d = float64(n) / 1e3
	} else {
		d, ok = parseSeconds(b.args[i])
	}
	if !ok || d < 0 || d > 1e9 {
		return
	}
	b.tArg = i
	if d > 0 {
		b.until = now + int64(d*1e9)
	}
}

// parseSeconds reads a timeout as Redis's strtold does for the forms clients send: decimal and hex.
func parseSeconds(a []byte) (float64, bool) {
	s := string(a)
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok && h != "" {
		n, err := strconv.ParseUint(h, 16, 63)
		return float64(n), err == nil
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// start sends the command to the slot's master, once its turn in the client's order has come.
func (b *blockedOp) start() {
	b.r.exec = nil
	snap := b.sess.l.pool.Snapshot()
	if snap == nil {
		b.done(errClusterDown)
		return
	}
	b.send(snap.Nodes[snap.MasterOf(uint16(b.slot))].Addr, false)
}

// send writes CLIENT ID, ASKING if asking, and the command with what remains of its timeout.
func (b *blockedOp) send(addr string, asking bool) {
	l := b.sess.l
	now := time.Now().UnixNano()
	if b.lease == nil || b.addr != addr {
		if b.lease != nil {
			b.lease.Release()
		}
		b.lease = b.sess.pool().Lease(addr)
	}
	b.addr, b.asking = addr, asking
	if b.lease == nil {
		b.done(l.errMaxLeased(addr))
		return
	}
	be := &b.r.be
	be.Raw = append(be.Raw[:0], respClientID...)
	be.Replies = 2
	if asking {
		be.Raw = append(be.Raw, respAsking...)
		be.Replies++
	}
	args := b.args
	if b.tArg >= 0 && b.until > 0 {
		args = append([][]byte(nil), b.args...)
		args[b.tArg] = b.remaining(now)
	}
	be.Raw = resp.AppendCommand(be.Raw, args...)
	be.Lost = false
	be.Deadline = math.MaxInt64
	if b.tArg < 0 {
		be.Deadline = now + l.timeout
	} else if b.until > 0 {
		be.Deadline = b.until + l.timeout
	}
	b.seen, b.nodeID, b.sentAt = 0, 0, now
	b.lease.Send(be)
	b.sess.pool().Flush()
}

// remaining is the timeout argument for what is left of the command's timeout: at least the smallest Redis
// takes, so that the node answers the timeout itself.
func (b *blockedOp) remaining(now int64) []byte {
	left := max(b.until-now, int64(time.Millisecond))
	if b.tMS {
		return strconv.AppendInt(nil, left/int64(time.Millisecond), 10)
	}
	return strconv.AppendFloat(nil, float64(left/int64(time.Millisecond))/1e3, 'f', 3, 64)
}

// Reply takes CLIENT ID's reply, ASKING's, then the command's (backend.Sink).
func (b *blockedOp) Reply(be *backend.Request, reply []byte) {
	b.seen++
	if b.seen < be.Replies {
		if b.seen == 1 {
			b.nodeID, _ = resp.ParseInt(reply)
		}
		return
	}
	l := b.sess.l
	now := time.Now().UnixNano()
	if !resp.IsError(reply) {
		b.errAt, b.hops = 0, 0
		if b.gone {
			b.putBack(reply)
			return
		}
		b.lease.Release()
		b.lease = nil
		b.done(reply)
		return
	}
	if be.Lost {
		b.lease = nil // closed by the pool
	}
	if b.gone {
		if b.lease != nil {
			b.lease.Release()
			b.lease = nil
		}
		b.done(reply)
		return
	}
	if now-b.sentAt > int64(time.Second) {
		b.hops = 0 // a redirect after a long wait is a new move of the slot, not a loop
	}
	if addr, ask, ok := backend.Redirection(reply, b.addr); ok && !be.Lost {
		if b.hops < l.srv.bcfg.Load().MaxRedirects {
			b.hops++
			if !ask {
				l.srv.topo.RequestRefresh()
			}
			b.send(addr, ask)
			return
		}
		// A raw MOVED would tell a cluster-unaware client nothing it can act on.
		reply = resp.AppendError(nil, "ERR too many redirects ("+strconv.Itoa(b.hops)+") for slot "+
			strconv.Itoa(b.slot)+": last from "+b.addr+" to "+addr)
	} else if be.Lost || transient(reply) {
		if b.errAt == 0 {
			b.errAt = now
		}
		if now-b.errAt < l.timeout {
			l.srv.topo.RequestRefresh()
			if b.lease != nil {
				b.lease.Release()
				b.lease = nil
			}
			b.resendLater()
			return
		}
	}
	if b.lease != nil {
		b.lease.Release()
		b.lease = nil
	}
	b.done(reply)
}

// transient tells the errors of a node that did not run the command and may run it soon, or whose role
// changed under a blocked client (UNBLOCKED).
func transient(reply []byte) bool {
	for _, p := range [][]byte{[]byte("-UNBLOCKED"), []byte("-CLUSTERDOWN"), []byte("-TRYAGAIN"),
		[]byte("-LOADING"), []byte("-MASTERDOWN"), []byte("-READONLY")} {
		if bytes.HasPrefix(reply, p) {
			return true
		}
	}
	return false
}

// resendLater sends the command again, to the slot's master then, after a backoff.
func (b *blockedOp) resendLater() {
	l := b.sess.l
	d := max(l.srv.bcfg.Load().RetryBackoffMax, 10*time.Millisecond)
	time.AfterFunc(d, func() {
		_ = l.el.Execute(context.Background(), runnable(func() {
			if b.gone {
				b.done(resp.AppendNullArray(nil))
				return
			}
			b.start()
			l.flush()
		}))
	})
}

type runnable func()

func (f runnable) Run(context.Context) error { f(); return nil }

// clientGone ends the wait of a client that left: CLIENT UNBLOCK from another connection to the node, so
// the leased one answers at once and is clean for reuse. Without the node's id for it, it is closed.
func (b *blockedOp) clientGone() {
	b.gone = true
	if b.lease == nil {
		return // between sends: resendLater sees gone
	}
	l := b.sess.l
	if b.nodeID == 0 {
		b.lease.Close()
		b.lease = nil
		return
	}
	u := l.pool.Lease(b.addr)
	if u == nil {
		b.lease.Close()
		b.lease = nil
		return
	}
	ub := &unblocker{lease: u, op: b}
	ub.r.Raw = resp.AppendCommandStrings(nil, "CLIENT", "UNBLOCK", strconv.FormatInt(b.nodeID, 10))
	ub.r.Sink = ub
	ub.send()
}

// unblocker is a CLIENT UNBLOCK on a lease of its own.
type unblocker struct {
	r     backend.Request
	lease *backend.Lease
	op    *blockedOp
	tries int
}

func (u *unblocker) send() {
	l := u.op.sess.l
	u.tries++
	u.r.Deadline = time.Now().UnixNano() + l.timeout
	u.r.Lost = false
	u.lease.Send(&u.r)
	l.pool.Flush()
}

// Reply: 0 means the node had not blocked the command yet (or had answered it): try again shortly; after a
// few tries the blocked connection is closed.
func (u *unblocker) Reply(be *backend.Request, reply []byte) {
	b := u.op
	if resp.IsError(reply) && !b.ended && b.lease != nil {
		b.lease.Close() // CLIENT UNBLOCK refused (an ACL): closing the connection ends the wait
	}
	if n, ok := resp.ParseInt(reply); ok && n == 0 && !b.ended && !be.Lost {
		if u.tries < 3 {
			l := b.sess.l
			time.AfterFunc(100*time.Millisecond, func() {
				_ = l.el.Execute(context.Background(), runnable(func() {
					if !b.ended {
						u.send()
						return
					}
					u.lease.Release()
				}))
			})
			return
		}
		if b.lease != nil {
			b.lease.Close() // its reply, an error, ends the op
		}
	}
	if !be.Lost {
		u.lease.Release()
	}
}

// putBack returns to its key what the node popped for a client that had left, then frees the lease.
func (b *blockedOp) putBack(reply []byte) {
	l := b.sess.l
	cmd := complete(b.restoreCommand(reply))
	if cmd == nil {
		b.lease.Release()
		b.lease = nil
		b.done(reply)
		return
	}
	pb := &putBack{lease: b.lease, op: b, what: strings.ToUpper(b.name)}
	b.lease = nil
	pb.r.Raw = resp.AppendCommand(nil, cmd...)
	pb.r.Deadline = time.Now().UnixNano() + l.timeout
	pb.r.Sink = pb
	pb.lease.Send(&pb.r)
	b.sess.pool().Flush()
}

type putBack struct {
	r     backend.Request
	lease *backend.Lease
	op    *blockedOp
	what  string
}

func (p *putBack) Reply(be *backend.Request, reply []byte) {
	l := p.op.sess.l
	if resp.IsError(reply) {
		l.srv.log.Warn("could not put back what a blocking command popped for a client that left",
			"command", p.what, "node", p.lease.Addr(), "err", string(bytes.TrimSpace(reply[1:])))
	} else {
		l.srv.stats.PutBack.Add(1)
	}
	if !be.Lost {
		p.lease.Release()
	}
	p.op.done(reply)
}

// restoreCommand is the command that undoes the pop in reply; nil when nothing was taken.
func (b *blockedOp) restoreCommand(reply []byte) [][]byte {
	elems, ok := resp.ArrayElems(reply, nil)
	bulk := func(v []byte) []byte { // a bulk, or in RESP3 a score's double
		s, ok := resp.ScalarText(v)
		if !ok {
			return nil
		}
		return s
	}
	switch b.name {
	case "blpop", "brpop":
		if !ok || len(elems) != 2 {
			return nil
		}
		push := "LPUSH"
		if b.name == "brpop" {
			push = "RPUSH"
		}
		return [][]byte{[]byte(push), bulk(elems[0]), bulk(elems[1])}
	case "bzpopmin", "bzpopmax":
		if !ok || len(elems) != 3 {
			return nil
		}
		return [][]byte{[]byte("ZADD"), bulk(elems[0]), bulk(elems[2]), bulk(elems[1])}
	case "blmpop", "bzmpop":
		if !ok || len(elems) != 2 {
			return nil
		}
		items, ok := resp.ArrayElems(elems[1], nil)
		if !ok || len(items) == 0 {
			return nil
		}
		if b.name == "bzmpop" {
			cmd := [][]byte{[]byte("ZADD"), bulk(elems[0])}
			for _, it := range items {
				pair, ok := resp.ArrayElems(it, nil)
				if !ok || len(pair) != 2 {
					return nil
				}
				cmd = append(cmd, bulk(pair[1]), bulk(pair[0]))
			}
			return cmd
		}
		push := "LPUSH"
		if b.fromRight() {
			push = "RPUSH"
		}
		cmd := [][]byte{[]byte(push), bulk(elems[0])}
		for i := len(items) - 1; i >= 0; i-- { // the first popped goes back last: nearest the end
			cmd = append(cmd, bulk(items[i]))
		}
		return cmd
	case "blmove", "brpoplpush":
		elem := bulk(reply)
		if elem == nil {
			return nil
		}
		from, to := "RIGHT", "LEFT" // BRPOPLPUSH
		if b.name == "blmove" {
			from, to = strings.ToUpper(string(b.args[3])), strings.ToUpper(string(b.args[4]))
		}
		return [][]byte{[]byte("EVAL"), []byte(moveBackScript), []byte("2"), b.args[2], b.args[1], elem,
			[]byte(to), []byte(from)}
	}
	return nil
}

// complete gives cmd, or nil if one of its parts could not be read from the reply.
func complete(cmd [][]byte) [][]byte {
	for _, a := range cmd {
		if a == nil {
			return nil
		}
	}
	return cmd
}

// moveBackScript takes ARGV[1] off KEYS[1] (the destination) from the end ARGV[2] it was pushed to, and if it
// was there pushes it back on KEYS[2] (the source) at the end ARGV[3] it was popped from.
const moveBackScript = `local n = redis.call('LREM', KEYS[1], ARGV[2] == 'LEFT' and 1 or -1, ARGV[1])
if n == 1 then
  if ARGV[3] == 'LEFT' then redis.call('LPUSH', KEYS[2], ARGV[1]) else redis.call('RPUSH', KEYS[2], ARGV[1]) end
end
return n`

// fromRight tells whether BLMPOP pops from the right: its direction follows the keys.
func (b *blockedOp) fromRight() bool {
	if len(b.args) < 3 {
		return false
	}
	n, ok := resp.ParseDecimal(b.args[2])
	if !ok || n < 0 || int(n)+3 >= len(b.args) {
		return false
	}
	return bytes.EqualFold(b.args[3+n], []byte("right"))
}

// done gives the client its reply and lets the commands after it go.
func (b *blockedOp) done(reply []byte) {
	b.ended = true
	s := b.sess
	s.l.srv.stats.Blocked.Add(-1)
	if s.blocked == b {
		s.blocked = nil
	}
	b.r.Reply(&b.r.be, reply)
	s.resumeAfterHeld()
}
