package backend

import "fmt"

// A Lease is a connection to one node held by one client session, for state Redis keeps per connection
// (WATCH, MULTI): the transport of a pipelined Conn with none of its policy. Every reply is delivered as it
// comes, MOVED and ASK included; nothing is followed, retried or resent. A leased connection whose state is
// unknown (a request past its deadline, a lost connection) is closed, never handed to another session.
//
// A Lease is owned by the Pool's event loop, like the rest of the Pool.
type Lease struct {
	c       *Conn // nil once released or closed
	addr    string
	tainted bool // Taint: Release closes the connection
}

// idleLeases is how many released leases a node keeps open for reuse on each loop.
const idleLeases = 4

// Lease returns a connection to addr for one session's exclusive use, dialling it if no released one is
// open. It returns nil when the loop already leases cfg.MaxLeases connections to the node.
func (p *Pool) Lease(addr string) *Lease {
	n := p.node(addr)
	if k := len(n.idle); k > 0 {
		c := n.idle[k-1]
		n.idle[k-1] = nil
		n.idle = n.idle[:k-1]
		return &Lease{c: c, addr: addr}
	}
	if len(n.leased) >= p.cfg.MaxLeases {
		p.Stats.LeasesRefused.Add(1)
		return nil
	}
	c := &Conn{pool: p, addr: addr, node: n, leased: true, pushy: p.cfg.Protocol == 3}
	c.in.Buffers = p.Buffers
	n.leased = append(n.leased, c)
	c.dial()
	return &Lease{c: c, addr: addr}
}

// PushSink takes everything a leased connection in push mode receives (Lease.Push).
type PushSink interface {
	Push(reply []byte) // a reply or a push message, as it comes
	Lost()             // the connection is gone (not called after Close); nothing more comes
}

// Push puts the lease in push mode, for a subscriber's connection: from now on every reply and unsolicited
// message goes to sink in the order received, and requests sent are written without waiting for a reply (a
// SUBSCRIBE of n channels is answered n times). A lease in push mode is never reused: Release closes it.
func (l *Lease) Push(sink PushSink) {
	if l.c != nil {
		l.c.push, l.c.pushy = sink, true
	}
}

// Taint says the connection's state was changed for good (a HELLO sent on it switched its protocol): it is
// not the pool's kind any more, so Release closes it instead of keeping it for another session.
func (l *Lease) Taint() { l.tainted = true }

// Addr is the node the lease is connected to.
func (l *Lease) Addr() string { return l.addr }

// Send writes r on the leased connection. r.Replies says how many replies its Raw asks for (0 means 1); its
// Sink is called once for each, in order, on the loop. If the connection is lost or r passes its deadline, the
// replies still owed are errors: "may or may not have run" for what was written, "unreachable" for what was
// not, "proxy timeout" for the request past its deadline, and the connection is closed.
func (l *Lease) Send(r *Request) {
	c := l.c
	if c == nil || c.state != stateOpen && c.state != stateDialing {
		r.Lost = true
		failReplies(r, 0, "CLUSTERDOWN The cluster is down: node "+l.addr+" is unreachable")
		return
	}
	c.fifo.Push(r)
	c.unsent++
	if c.state == stateOpen {
		c.queue(r.Raw)
		c.pool.markDirty(c)
	}
}

// Release gives the connection back when the caller knows its state is clean (every reply received, no WATCH
// or MULTI left): it is kept for another session, or closed if enough are kept. Anything else is closed. Once
// released or closed, a lease is done with: a second Release or Close does nothing.
func (l *Lease) Release() {
	c := l.c
	if c == nil {
		return
	}
	l.c = nil
	n := c.pool.nodes[c.addr]
	if l.tainted || c.push != nil || c.state != stateOpen || c.fifo.Len() > 0 || n == nil || n.stale || len(n.idle) >= idleLeases {
		c.push = nil
		c.pool.dropLease(c)
		return
	}
	n.idle = append(n.idle, c)
}

// Close closes the connection: its state is unknown or no longer wanted. Replies still owed are errors.
func (l *Lease) Close() {
	c := l.c
	if c == nil {
		return
	}
	l.c = nil
	c.push = nil
	c.pool.dropLease(c)
}

func (p *Pool) dropLease(c *Conn) {
	if n := p.nodes[c.addr]; n != nil {
		n.leased = remove(n.leased, c)
		n.idle = remove(n.idle, c)
	}
	c.shut()
	c.failPending(c.unreachable())
	if sink := c.push; sink != nil {
		c.push = nil
		sink.Lost()
	}
}

func remove(cs []*Conn, c *Conn) []*Conn {
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			return cs[:len(cs)-1]
		}
	}
	return cs
}

// leasedReply delivers one reply to the request at the head of a leased connection's fifo.
func (c *Conn) leasedReply(reply []byte) {
	r := c.fifo.At(0)
	c.part++
	if c.part >= max(r.Replies, 1) {
		c.fifo.Pop()
		c.part = 0
	}
	r.Sink.Reply(r, reply)
}

// failLeased answers the replies r still owes, from the part-th on, with errText.
func (c *Conn) failLeased(r *Request, part int, errText string) {
	c.pool.Stats.Failed.Add(1)
	failReplies(r, part, errText)
}

func failReplies(r *Request, part int, errText string) {
	reply := fmt.Appendf(nil, "-%s\r\n", errText)
	for i := part; i < max(r.Replies, 1); i++ {
		r.Sink.Reply(r, reply)
	}
}

// failPending answers everything a leased connection holds: what was written may have run.
func (c *Conn) failPending(notWritten string) {
	written := c.fifo.Len() - c.unsent
	for i := 0; c.fifo.Len() > 0; i++ {
		r := c.fifo.Pop()
		errText := notWritten
		if i < written {
			errText = fmt.Sprintf("ERR connection to %s lost before the reply; the command may or may not have run", c.addr)
		}
		part := 0
		if i == 0 {
			part, c.part = c.part, 0
		}
		r.Lost = true
		c.failLeased(r, part, errText)
	}
	c.unsent = 0
}

// expireLeased closes a leased connection whose oldest request passed its deadline: what the node did with
// it is unknown, so the connection cannot serve the session any further.
func (c *Conn) expireLeased(now int64) {
	if c.fifo.Len() == 0 || c.fifo.At(0).Deadline > now {
		return
	}
	r := c.fifo.Pop()
	part := c.part
	c.part = 0
	c.failLeased(r, part, fmt.Sprintf("ERR proxy timeout: no reply from %s in time", c.addr))
	c.pool.dropLease(c)
}
