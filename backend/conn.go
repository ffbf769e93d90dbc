package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/internal/tlsloop"
	"github.com/slotproxy/slotproxy/topology"

	"github.com/slotproxy/slotproxy/internal/inbox"
	"github.com/slotproxy/slotproxy/internal/ring"
	"github.com/slotproxy/slotproxy/resp"
)

type connState uint8

const (
	stateIdle    connState = iota // never dialled, or lost and free to redial
	stateDialing                  // a dial goroutine is connecting; requests queue in fifo
	stateOpen                     // registered on the loop; requests are written as they come
	stateDown                     // the last dial failed; requests back off until redialAt
	stateShut                     // closed on purpose (node left the cluster, engine stops)
)

// askingMarker stands in the fifo for an ASKING sent just before a request; its +OK is dropped.
var askingMarker = &Request{}

var askingCmd = []byte("*1\r\n$6\r\nASKING\r\n")

const (
	// bigWrite is the request size from which a flush writes the request's own bytes rather than a copy.
	bigWrite = 64 << 10
	maxIOV   = 256 // well under the kernel's IOV_MAX (1024)
)

// Conn is one pipelined connection to a node, owned by its Pool's event loop. Requests are answered in the
// order they were written, so the fifo matches each reply to its request. A nil fifo entry is a request that
// already got its answer (deadline passed): its late reply is dropped.
type Conn struct {
	pool *Pool
	addr string
	node *node // whose statistics it keeps; nil in tests that make a Conn alone

	gc       gnet.Conn     // set in OnOpen, nil otherwise; the TLS layer over the socket with TLS
	tls      *tlsloop.Conn // with TLS: the layer; nil otherwise
	state    connState
	dirty    bool                // in pool.dirty
	out      []byte              // bytes queued for the next flush (open state only)
	iov      [][]byte            // with large requests queued: runs of out and the requests' own bytes
	mark     int                 // start in out of the run not yet in iov
	fifo     ring.Ring[*Request] // requests written or queued, oldest first
	unsent   int                 // how many fifo entries at the tail are not written yet
	scanner  resp.ReplyScanner
	in       inbox.Inbox // bytes of a reply that spans reads
	failures int         // consecutive failed dials
	redialAt int64       // unix ns; no dial before it while down

	leased bool     // a Lease's: replies delivered as they come, no policy (lease.go)
	push   PushSink // a leased connection in push mode: everything received goes here
	// pushy: push is set, or the connection speaks RESP3, where a push message (>) may come between replies.
	// One flag for both keeps a RESP2 pipelined connection's reply loop at the one test it always had.
	pushy bool
	part  int // leased: replies the head request has received

	reads      uint64 // read events, a progress count for stall detection
	readsSeen  uint64 // reads at the last Tick
	quietSince int64  // unix ns since the connection awaits replies with nothing received
}

// sock is the connection's gnet.Conn itself, under any TLS layer: what the loop closes.
func (c *Conn) sock() gnet.Conn {
	if c.tls != nil {
		return c.tls.Conn
	}
	return c.gc
}

// Pool returns the pool the connection belongs to.
func (c *Conn) Pool() *Pool { return c.pool }

func (c *Conn) enqueue(r *Request) {
	switch c.state {
	case stateDown:
		if time.Now().UnixNano() < c.redialAt {
			// Requests waiting on a dead node keep asking for a fresh map (coalesced), so a promoted replica
			// is found within a refresh gap of its promotion.
			c.pool.topo.RequestRefresh()
			c.pool.retry(r, RetryUnreachable, c.unreachable())
			return
		}
		c.dial()
	case stateIdle, stateShut:
		c.dial()
	}
	if r.ask != "" {
		c.fifo.Push(askingMarker)
		c.unsent++
		if c.state == stateOpen {
			c.queue(askingCmd)
		}
		r.ask = ""
	}
	c.fifo.Push(r)
	c.unsent++
	if c.state == stateOpen {
		c.queue(r.Raw)
		// Reply-clocked batching: with nothing in flight the request goes out at the end of this callback;
		// otherwise it waits for the replies in flight and leaves with everything queued meanwhile.
		if c.fifo.Len() == c.unsent {
			c.pool.markDirty(c)
		}
	}
}

// queue adds b to the next flush. A large request is written from its own memory (the request keeps it until
// its reply) instead of being copied into out.
func (c *Conn) queue(b []byte) {
	if len(b) < bigWrite || len(c.iov) >= maxIOV {
		if len(c.out)+len(b) > cap(c.out) {
			// Double, not append's 1.25 for large slices: a batch of thousands of requests (a DEL of a
			// million keys splits into 16384) would be copied over and over.
			c.out = append(make([]byte, 0, max(2*cap(c.out), len(c.out)+len(b))), c.out...)
		}
		c.out = append(c.out, b...)
		return
	}
	if len(c.out) > c.mark {
		c.iov = append(c.iov, c.out[c.mark:len(c.out):len(c.out)])
		c.mark = len(c.out)
	}
	c.iov = append(c.iov, b)
}

// dropIOV forgets the queued large requests' bytes (written, or never to be).
func (c *Conn) dropIOV() {
	clear(c.iov)
	c.iov, c.mark = c.iov[:0], 0
}

func (c *Conn) flush() {
	c.dirty = false
	if c.state != stateOpen || (len(c.out) == 0 && len(c.iov) == 0) {
		return
	}
	c.stampSent(c.unsent)
	c.unsent = 0
	if len(c.iov) == 0 {
		_, _ = c.gc.Write(c.out) // on error gnet closes the conn and OnClose retries the fifo
	} else {
		if len(c.out) > c.mark {
			c.iov = append(c.iov, c.out[c.mark:])
		}
		_, _ = c.gc.Writev(c.iov) // gnet copies what the socket does not take at once
		c.dropIOV()
	}
	c.out = c.out[:0]
	if cap(c.out) > 1<<20 {
		c.out = nil // one huge batch must not pin its buffer
	}
	if c.push != nil { // nothing written is matched to a reply
		for c.fifo.Len() > 0 {
			c.fifo.Pop()
		}
	}
}

func (c *Conn) noConnection() string {
	return "ERR proxy timeout: no connection to " + c.addr + " in time"
}

func (c *Conn) unreachable() string {
	return "CLUSTERDOWN The cluster is down: node " + c.addr + " is unreachable"
}

func (c *Conn) dial() {
	c.state = stateDialing
	if c.node != nil {
		c.node.stats.Dials++
	}
	p := c.pool
	cfg := p.cfg
	go func() {
		nc, err := net.DialTimeout("tcp", c.addr, cfg.DialTimeout)
		switch {
		case err != nil:
		case cfg.TLS != nil:
			// The TLS handshake and then the proxy's own (AUTH, READONLY, HELLO) on the blocking socket; the
			// loop takes the socket with the TLS state (OnOpenTLS).
			var pend *tlsloop.Pending
			pend, err = tlsloop.Handshake(nc.(*net.TCPConn), topology.ForAddr(cfg.TLS, c.addr), true, cfg.DialTimeout,
				func(tc *tls.Conn) error { return handshake(tc, cfg) })
			if err != nil {
				nc.Close()
				break
			}
			pend.User = c
			err = tlsloop.Enroll(gnet.Engine{}, p.el, pend)
		default:
			if err = handshake(nc, cfg); err != nil {
				nc.Close()
				break
			}
			var ch <-chan gnet.RegisteredResult
			ch, err = p.el.Enroll(gnet.NewContext(context.Background(), c), nc)
			if err == nil {
				err = (<-ch).Err // Enroll closes nc: the loop keeps a dup of the socket
			} else {
				nc.Close()
			}
		}
		if err != nil {
			p.reportDial(c, err)
		}
	}()
}

// handshake authenticates a fresh connection, sends READONLY when reads may go to replicas (harmless on a
// master, and a master may become a replica later) and HELLO 3 for a RESP3 pool, before it joins the loop,
// while it is still a blocking net.Conn with deadlines. AUTH comes first: HELLO without it fails on a node
// that requires a password.
func handshake(nc net.Conn, cfg *Config) error {
	var cmd []byte
	replies := 0
	if cfg.Password != "" {
		if cfg.Username != "" {
			cmd = resp.AppendCommandStrings(cmd, "AUTH", cfg.Username, cfg.Password)
		} else {
			cmd = resp.AppendCommandStrings(cmd, "AUTH", cfg.Password)
		}
		replies++
	}
	if cfg.ReadFrom != ReadMaster {
		cmd = resp.AppendCommandStrings(cmd, "READONLY")
		replies++
	}
	if cfg.Protocol == 3 {
		cmd = resp.AppendCommandStrings(cmd, "HELLO", "3")
		replies++
	}
	if replies == 0 {
		return nil
	}
	_ = nc.SetDeadline(time.Now().Add(cfg.DialTimeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(cmd); err != nil {
		return err
	}
	// AUTH and READONLY answer +OK or an error; HELLO 3 a map, or an error. Every reply is read whole, so that
	// nothing of the handshake is left for the loop to match to a request.
	r := bufio.NewReader(nc)
	var sc resp.ReplyScanner
	var buf []byte
	for range replies {
		n := 0
		for n == 0 {
			b, err := r.ReadByte()
			if err != nil {
				return err
			}
			buf = append(buf, b)
			if b != '\n' {
				continue
			}
			if n, err = sc.Scan(buf); err != nil {
				return fmt.Errorf("handshake: %w", err)
			}
		}
		if buf[0] == '-' {
			return errors.New("handshake: " + strings.TrimRight(string(buf[1:n]), "\r\n"))
		}
		buf = buf[:0]
	}
	return nil
}

// OnOpenTLS is OnOpen for a connection dialled with TLS: from here on it reads and writes through the
// TLS layer, on the loop.
func (c *Conn) OnOpenTLS(gc gnet.Conn, p *tlsloop.Pending) []byte {
	c.tls = tlsloop.Attach(gc, p)
	gc.SetContext(c)
	return c.OnOpen(c.tls)
}

// OnOpen runs on the loop when the dialled connection is registered. It returns the queued requests to write.
func (c *Conn) OnOpen(gc gnet.Conn) []byte {
	if c.state != stateDialing {
		// Shut while dialling: drop the connection.
		_ = gc.Close()
		return nil
	}
	c.gc = gc
	c.state = stateOpen
	c.failures = 0
	c.quietSince = 0 // a fresh connection has been quiet for no time
	// Requests that expired while the dial was under way are dropped here: left in the fifo unwritten, each
	// would be matched to the reply of the request after it.
	for n := c.fifo.Len(); n > 0; n-- {
		switch r := c.fifo.Pop(); r {
		case nil:
		case askingMarker:
			if n > 1 && c.fifo.At(0) != nil { // an ASKING whose request expired must not apply to the next one
				c.fifo.Push(r)
				c.queue(askingCmd)
			}
		default:
			c.fifo.Push(r)
			c.queue(r.Raw)
		}
	}
	c.unsent = c.fifo.Len()
	c.flush()
	return nil
}

// OnTraffic matches every complete reply to the oldest request in the fifo.
func (c *Conn) OnTraffic(gc gnet.Conn) {
	if c.tls != nil {
		err := c.tls.Fill(&c.pool.tlsScratch)
		c.onTraffic(c.tls)
		c.tls.Release()
		if err != nil && c.gc != nil { // close_notify, or a record that does not decrypt
			_ = c.pool.el.Close(gc)
		}
		return
	}
	c.onTraffic(gc)
}

func (c *Conn) onTraffic(gc gnet.Conn) {
	c.reads++
	buf, ok := c.in.Bytes(gc, c.scanner.Need())
	if !ok {
		return // the reply in progress is still arriving
	}
	off := 0
	var now int64
	for off < len(buf) {
		n, err := c.scanner.Scan(buf[off:])
		if err != nil {
			c.outOfStep(gc, "bad reply", "err", err)
			return
		}
		if n == 0 {
			break
		}
		reply := buf[off : off+n]
		off += n
		if c.pushy {
			if c.push != nil {
				c.push.Push(reply)
				if c.push == nil { // closed from the sink
					return
				}
				continue
			}
			if reply[0] == '>' {
				// Out of band (RESP3): never the answer to a request. The proxy subscribes only on connections
				// in push mode and refuses CLIENT TRACKING, so none is expected; it is dropped.
				c.pool.log.Debug("dropping a push message on a request connection", "node", c.addr)
				continue
			}
		}
		if c.fifo.Len()-c.unsent <= 0 {
			c.outOfStep(gc, "reply without request")
			return
		}
		if c.leased {
			c.leasedReply(reply)
			continue
		}
		if now == 0 {
			now = time.Now().UnixNano() // once per read, not per reply
		}
		r := c.fifo.Pop()
		c.countReply(r, reply, now)
		c.handle(r, reply)
	}
	c.in.Done(gc, buf, off)
	if c.unsent > 0 && c.state == stateOpen {
		c.pool.markDirty(c)
	}
}

// outOfStep closes a connection whose replies can no longer be matched to its requests; nothing more it
// sent is scanned, and OnClose applies the resend rules to what it held.
func (c *Conn) outOfStep(gc gnet.Conn, why string, args ...any) {
	c.pool.log.Warn("closing backend connection: "+why, append([]any{"node", c.addr}, args...)...)
	c.in.Reset()
	_, _ = gc.Discard(-1)
	_ = c.pool.el.Close(c.sock())
}

func (c *Conn) handle(r *Request, reply []byte) {
	if r == nil || r == askingMarker {
		return
	}
	p := c.pool
	switch kind := classify(reply); kind {
	case errOther:
		p.deliver(r, reply)
	case errMoved, errAsk:
		p.redirect(r, reply, kind, c.addr)
	case errTryAgain, errLoading:
		if kind == errLoading {
			p.markUnhealthy(c.addr, time.Second)
		}
		p.retry(r, retryReasonOf(kind), string(reply[1:len(reply)-2]))
	default: // CLUSTERDOWN, READONLY, MASTERDOWN: the map is stale or the cluster is failing over
		if kind == errMasterDown {
			p.markUnhealthy(c.addr, time.Second)
		}
		r.moved = ""
		p.topo.RequestRefresh()
		p.retry(r, retryReasonOf(kind), string(reply[1:len(reply)-2]))
	}
}

// OnClose fails or retries everything the connection held. A request that was written and is not idempotent
// may have run: it gets an error instead of a second execution.
func (c *Conn) OnClose(err error) {
	p := c.pool
	if c.leased {
		c.gc, c.tls = nil, nil
		if c.state == stateOpen && err != nil {
			p.Stats.ConnsLost.Add(1)
			p.log.Warn("leased backend connection lost", "node", c.addr, "err", err)
			p.topo.RequestRefresh()
		}
		p.dropLease(c)
		c.out = c.out[:0]
		c.dropIOV()
		c.scanner.Reset()
		c.in.Reset()
		return
	}
	wasOpen := c.state == stateOpen
	c.gc, c.tls = nil, nil
	if c.state != stateShut {
		c.state = stateIdle
	}
	written := c.fifo.Len() - c.unsent
	n := c.fifo.Len()
	for i := 0; i < n; i++ {
		r := c.fifo.Pop()
		if r == nil || r == askingMarker {
			continue
		}
		if i < written && !r.Idempotent {
			p.fail(r, fmt.Sprintf("ERR connection to %s lost before the reply; the command may or may not have run", c.addr))
			continue
		}
		r.attempts = 0 // a lost node is not the request's fault: back off from the minimum
		p.retry(r, RetryUnreachable, c.unreachable())
	}
	c.unsent = 0
	c.out = c.out[:0]
	c.dropIOV()
	c.scanner.Reset()
	c.in.Reset()
	if wasOpen && c.state != stateShut && err != nil { // nil: closed here, or the engine stops
		p.Stats.ConnsLost.Add(1)
		p.markUnhealthy(c.addr, time.Second)
		p.log.Warn("backend connection lost", "node", c.addr, "err", err)
		p.topo.RequestRefresh()
	}
}

func (c *Conn) dialFailed(err error) {
	if c.state != stateDialing {
		return
	}
	p := c.pool
	p.Stats.DialErrors.Add(1)
	if c.leased {
		c.state = stateDown
		p.markUnhealthy(c.addr, time.Second)
		p.dropLease(c)
		p.topo.RequestRefresh()
		return
	}
	c.failures++
	c.state = stateDown
	backoff := p.cfg.RetryBackoffMin << min(c.failures, 10)
	c.redialAt = time.Now().UnixNano() + int64(min(backoff, time.Second))
	p.markUnhealthy(c.addr, time.Second)
	if c.failures == 1 {
		p.log.Warn("cannot connect to node", "node", c.addr, "err", err)
	}
	now := time.Now().UnixNano()
	for c.fifo.Len() > 0 {
		r := c.fifo.Pop()
		switch {
		case r == nil || r == askingMarker:
		case now >= r.Deadline && r.lastErr == "":
			// Its deadline came while the dial was under way (a node that accepts but does not answer the
			// handshake fails it at DialTimeout): the error expire gives then, whichever of the two ran first.
			p.fail(r, c.noConnection())
		default:
			p.retry(r, RetryUnreachable, c.unreachable())
		}
	}
	c.unsent = 0
	p.topo.RequestRefresh()
}

// expire answers every request past its deadline. A connection that kept a written request unanswered past
// its deadline is treated as dead.
//
// The connection itself is closed (and its requests follow OnClose's rules) only when it is stuck: requests
// written and nothing at all received for StallTimeout. A request that is merely slow (a long script, a large
// reply on its way, a queue behind one) fails alone at its deadline, and its late reply is dropped: closing
// would fail every other client's request in flight on the connection.
func (c *Conn) expire(now int64) {
	if len(c.iov) > 0 {
		// Queued large requests are written from their own memory, which their sinks may reuse once they are
		// answered: send them before any is.
		c.flush()
	}
	written := c.fifo.Len() - c.unsent
	for i := 0; i < c.fifo.Len(); i++ {
		r := c.fifo.At(i)
		if r == nil || r == askingMarker || r.Deadline > now {
			continue
		}
		c.fifo.Set(i, nil)
		switch {
		case i < written || c.state == stateOpen:
			c.pool.fail(r, fmt.Sprintf("ERR proxy timeout: no reply from %s in time", c.addr))
		case r.lastErr != "":
			// Never sent: a resend waiting for its connection gives the error that made it resend (a
			// CLUSTERDOWN while a lost node is redialled), not a timeout that suggests it may have run.
			c.pool.fail(r, r.lastErr)
		default:
			c.pool.fail(r, c.noConnection())
		}
	}
	if c.reads != c.readsSeen || c.fifo.Len() == c.unsent || c.quietSince == 0 {
		c.readsSeen, c.quietSince = c.reads, now // progress, or nothing awaited
		return
	}
	if stall := int64(c.pool.cfg.StallTimeout); stall > 0 && now-c.quietSince >= stall && c.gc != nil {
		c.pool.log.Warn("closing backend connection: no reply for too long", "node", c.addr,
			"silent", time.Duration(now-c.quietSince).String(), "awaiting", c.fifo.Len()-c.unsent)
		_ = c.pool.el.Close(c.sock())
	}
}

// shut closes the connection on purpose; it is not redialled unless a request needs it again.
func (c *Conn) shut() {
	prev := c.state
	c.state = stateShut
	if prev == stateOpen && c.gc != nil {
		_ = c.pool.el.Close(c.sock())
	}
}
