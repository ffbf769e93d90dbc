// Package tlsloop runs crypto/tls on a gnet event loop (gnet has no TLS of its own).
//
// The handshake runs on a goroutine over the blocking *net.TCPConn (crypto/tls's handshake cannot be
// resumed after a would-block: handshakeErr is sticky). Then the raw socket is enrolled into a gnet loop
// and the same *tls.Conn keeps working, its net.Conn now being an in-memory transport:
//
//   - reads come from the gnet conn's inbound buffer and return errWouldBlock (a net.Error with
//     Temporary()==true) when it is empty; crypto/tls does not make such errors sticky
//     (crypto/tls/conn.go readRecordOrCCS: `if e, ok := err.(net.Error); !ok || !e.Temporary()`),
//     keeps a partial record in its rawInput and resumes on the next Read;
//   - writes accumulate ciphertext that is handed to gnet.Conn.Write once per Write/Writev.
//
// So the record layer, TLS 1.2 and 1.3, KeyUpdate, alerts, close_notify, record size limits and any bytes
// crypto/tls read past the handshake are all crypto/tls's own code: nothing cryptographic is hand-written.
// Everything after Attach must run on the conn's event loop (like any gnet.Conn Reader/Writer method).
package tlsloop

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// errWouldBlock tells crypto/tls that no more ciphertext is buffered. Temporary, so not sticky.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsloop: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Is makes it also an os.ErrDeadlineExceeded, in case crypto/tls ever tests for that instead of Temporary.
func (wouldBlock) Is(target error) bool { return target == os.ErrDeadlineExceeded }

var errWouldBlock error = wouldBlock{}

// transport is the net.Conn under the tls.Conn.
type transport struct {
	tcp net.Conn  // handshake phase: the blocking socket
	gc  gnet.Conn // loop phase: ciphertext source and sink
	out []byte    // loop phase: ciphertext produced by the current Write/Read, not yet given to gnet
}

func (t *transport) Read(p []byte) (int, error) {
	if t.gc == nil {
		return t.tcp.Read(p)
	}
	if t.gc.InboundBuffered() == 0 {
		return 0, errWouldBlock
	}
	n, _ := t.gc.Read(p)
	return n, nil
}

func (t *transport) Write(p []byte) (int, error) {
	if t.gc == nil {
		return t.tcp.Write(p)
	}
	t.out = append(t.out, p...)
	return len(p), nil
}

func (t *transport) flush() error {
	if len(t.out) == 0 {
		return nil
	}
	_, err := t.gc.Write(t.out) // gnet copies what the socket does not take now
	t.out = t.out[:0]
	if cap(t.out) > 1<<20 {
		t.out = nil
	}
	return err
}

func (t *transport) Close() error {
	if t.gc == nil {
		return t.tcp.Close()
	}
	return nil // the loop owns the socket
}
func (t *transport) LocalAddr() net.Addr  { return t.tcp.LocalAddr() }
func (t *transport) RemoteAddr() net.Addr { return t.tcp.RemoteAddr() }
func (t *transport) SetDeadline(d time.Time) error {
	if t.gc == nil {
		return t.tcp.SetDeadline(d)
	}
	return nil
}
func (t *transport) SetReadDeadline(d time.Time) error {
	if t.gc == nil {
		return t.tcp.SetReadDeadline(d)
	}
	return nil
}
func (t *transport) SetWriteDeadline(d time.Time) error {
	if t.gc == nil {
		return t.tcp.SetWriteDeadline(d)
	}
	return nil
}

// Pending is a handshaken connection on its way to a loop: it is the gnet context the conn is enrolled
// with, so OnOpen finds it in c.Context().
type Pending struct {
	TLS  *tls.Conn
	t    *transport
	Raw  *net.TCPConn // closed by gnet's Enroll once it has a dup
	User any          // caller's own context (e.g. *backend.Conn)
}

// Handshake runs the server (or client, if client is true) handshake on raw, blocking, within timeout.
// afterHandshake, if set, runs on the blocking tls.Conn (e.g. the backend's AUTH/READONLY/HELLO).
func Handshake(raw *net.TCPConn, cfg *tls.Config, client bool, timeout time.Duration,
	afterHandshake func(*tls.Conn) error) (*Pending, error) {
	t := &transport{tcp: raw}
	var tc *tls.Conn
	if client {
		tc = tls.Client(t, cfg)
	} else {
		tc = tls.Server(t, cfg)
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err == nil && afterHandshake != nil {
		err = afterHandshake(tc)
	}
	_ = raw.SetDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	return &Pending{TLS: tc, t: t, Raw: raw}, nil
}

// Conn is what a session reads and writes instead of the gnet.Conn: the gnet.Conn methods it does not
// override (Fd, RemoteAddr, LocalAddr, SetKeepAlive, Context, EventLoop, Wake, Close, OutboundBuffered...)
// are the socket's own, so the real client address, keepalive and EPOLL_CTL_MOD pausing keep working.
type Conn struct {
	gnet.Conn
	tc   *tls.Conn
	t    *transport
	in   []byte // plaintext: in[r:] unread
	r    int
	sc   *Scratch // non-nil while in is the loop's shared buffer
	rerr error    // sticky read-side error (io.EOF on close_notify)
	wbuf []byte
}

// Attach is called in OnOpen on the loop: from here on the tls.Conn reads and writes through gc.
// It wakes the conn so OnTraffic runs once even if crypto/tls already buffered the client's first records.
func Attach(gc gnet.Conn, p *Pending) *Conn {
	p.t.gc = gc
	c := &Conn{Conn: gc, tc: p.TLS, t: p.t}
	_ = gc.Wake(nil)
	return c
}

// State returns the negotiated TLS parameters (version, suite, peer certificates, SNI, ALPN).
func (c *Conn) State() tls.ConnectionState { return c.tc.ConnectionState() }

// Scratch is a per-loop plaintext buffer shared by the loop's TLS conns: a conn holds private plaintext
// only for what its session left unread at the end of a callback (as gnet does with its own read buffer).
type Scratch struct{ buf []byte }

// Fill decrypts every complete record gnet has buffered. Call it at the top of OnTraffic, and Release at
// the end. A non-nil error means the peer closed (io.EOF after close_notify) or the stream is corrupt:
// close the conn after handling what is buffered.
func (c *Conn) Fill(sc *Scratch) error {
	if c.rerr != nil {
		return c.rerr
	}
	if c.r == len(c.in) { // nothing pending: decrypt into the loop's buffer
		if cap(sc.buf) < 64<<10 {
			sc.buf = make([]byte, 0, 64<<10)
		}
		c.in, c.r, c.sc = sc.buf[:0], 0, sc
	}
	for {
		if cap(c.in)-len(c.in) < 16<<10 {
			if c.r > 0 { // compact
				n := copy(c.in, c.in[c.r:])
				c.in, c.r = c.in[:n], 0
			}
			if cap(c.in)-len(c.in) < 16<<10 {
				nb := make([]byte, len(c.in), 2*cap(c.in)+32<<10)
				copy(nb, c.in)
				c.in = nb
				if c.sc != nil {
					c.sc.buf = nb[:0]
				}
			}
		}
		n, err := c.tc.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+n]
		if err != nil {
			if _, ok := err.(wouldBlock); !ok { // crypto/tls returns the transport's error as is
				c.rerr = err
			}
			break
		}
	}
	_ = c.t.flush() // a KeyUpdate answer or alert crypto/tls wrote while reading
	return c.rerr
}

// Release ends a callback: unread plaintext in the loop's buffer moves to a private one, and a fully read
// private buffer is dropped, so an idle conn holds no plaintext memory.
func (c *Conn) Release() {
	if c.r == len(c.in) {
		c.in, c.r, c.sc = nil, 0, nil
		return
	}
	if c.sc != nil {
		c.in, c.r, c.sc = append([]byte(nil), c.in[c.r:]...), 0, nil
	}
}

// ---- gnet.Reader over the plaintext ----

func (c *Conn) InboundBuffered() int { return len(c.in) - c.r }

func (c *Conn) Peek(n int) ([]byte, error) {
	avail := len(c.in) - c.r
	if n > avail {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = avail
	}
	return c.in[c.r : c.r+n], nil
}

func (c *Conn) Discard(n int) (int, error) {
	avail := len(c.in) - c.r
	if n < 0 || n > avail {
		n = avail
	}
	c.r += n
	return n, nil
}

func (c *Conn) Next(n int) ([]byte, error) {
	b, err := c.Peek(n)
	if err == nil {
		c.r += len(b)
	}
	return b, err
}

func (c *Conn) Read(p []byte) (int, error) {
	n := copy(p, c.in[c.r:])
	c.r += n
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

// ---- gnet.Writer: encrypt, then one gnet write ----

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.tc.Write(p)
	if ferr := c.t.flush(); err == nil {
		err = ferr
	}
	return n, err
}

// Writev coalesces small vectors into one record; large ones are sealed in place by crypto/tls.
func (c *Conn) Writev(bs [][]byte) (int, error) {
	total := 0
	for _, b := range bs {
		total += len(b)
	}
	var err error
	if total <= 16<<10 {
		c.wbuf = c.wbuf[:0]
		for _, b := range bs {
			c.wbuf = append(c.wbuf, b...)
		}
		_, err = c.tc.Write(c.wbuf)
	} else {
		for _, b := range bs {
			if _, err = c.tc.Write(b); err != nil {
				break
			}
		}
	}
	if ferr := c.t.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	return total, nil
}

// Close ends the connection as TLS wants: a close_notify alert, then the socket. On the loop only.
func (c *Conn) Close() error {
	c.CloseNotify()
	return c.Conn.Close()
}

// CloseNotify queues a close_notify alert (Close sends one itself).
func (c *Conn) CloseNotify() {
	_ = c.tc.CloseWrite()
	_ = c.t.flush()
}

// Enroll hands a handshaken connection to a loop. el==nil uses the engine's load balancer (which must then
// be LeastConnections or SourceAddrHash: RoundRobin's counter is not safe outside the acceptor).
func Enroll(eng gnet.Engine, el gnet.EventLoop, p *Pending) error {
	ctx := gnet.NewContext(context.Background(), p)
	var ch <-chan gnet.RegisteredResult
	var err error
	if el != nil {
		ch, err = el.Enroll(ctx, p.Raw)
	} else {
		ch, err = eng.Register(gnet.NewNetConnContext(ctx, p.Raw))
	}
	if err != nil {
		p.Raw.Close()
		return err
	}
	return (<-ch).Err // gnet closed p.Raw; the loop keeps a dup of the socket
}
