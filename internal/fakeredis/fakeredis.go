// Package fakeredis is a scriptable RESP server for tests: a loopback listener on a free port whose every
// request goes to a Handler the test supplies. A handler may answer like Redis (Default does, for the few
// commands a backend connection needs), or misbehave on purpose: answer garbage, answer in pieces with pauses
// between them, answer late, answer twice, not answer, or close the connection.
//
// Each connection is served by its own goroutine, which reads requests with resp.CommandParser and calls the
// handler for each one, in order, one at a time: a handler that sleeps delays every later request on its
// connection, as a slow Redis would. Close stops the listener and every connection and waits for all the
// goroutines; Start registers it with t.Cleanup.
package fakeredis

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/resp"
)

// Handler answers one request. It runs on the connection's goroutine; args are valid only during the call.
// Writing nothing leaves the request unanswered. A handler that waits must also give up when c.Done() is
// closed, or Close waits for it (Sleep and WriteChunks do).
type Handler func(c *Conn, args [][]byte)

// Command is one request as the server received it.
type Command struct {
	Conn int      // Conn.ID of the connection it came on
	Args []string // copied
}

// Name is the upper-cased command name ("" for none).
func (c Command) Name() string {
	if len(c.Args) == 0 {
		return ""
	}
	return strings.ToUpper(c.Args[0])
}

// Server is one fake node. Its methods are safe for concurrent use.
type Server struct {
	Addr string // 127.0.0.1:port

	ln      net.Listener
	handler atomic.Pointer[Handler]
	done    chan struct{} // closed by Close
	once    sync.Once
	wg      sync.WaitGroup // the accept loop and every connection goroutine

	mu       sync.Mutex
	conns    map[*Conn]struct{} // open connections
	log      []Command
	data     map[string]string // the Default handler's keyspace
	user     string            // required by AUTH when pass is set ("" is "default")
	pass     string            // "" means no AUTH needed
	accepted int
	requests int
	protoErr int
}

// Start listens on a free loopback port and serves with h (Default if nil) until Close or the end of the test.
func Start(t testing.TB, h Handler) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fakeredis: %v", err)
	}
	s := &Server{
		Addr:  ln.Addr().String(),
		ln:    ln,
		done:  make(chan struct{}),
		conns: make(map[*Conn]struct{}),
		data:  make(map[string]string),
	}
	s.SetHandler(h)
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// SetHandler replaces the handler; requests already being handled finish with the old one. nil is Default.
func (s *Server) SetHandler(h Handler) {
	if h == nil {
		h = Default
	}
	s.handler.Store(&h)
}

// RequirePass makes the Default handler refuse every command but AUTH user pass (or AUTH pass, for user "")
// until a connection has authenticated, as requirepass and ACLs do.
func (s *Server) RequirePass(user, pass string) {
	s.mu.Lock()
	s.user, s.pass = user, pass
	s.mu.Unlock()
}

// Set stores a key for the Default handler's GET.
func (s *Server) Set(key, val string) {
	s.mu.Lock()
	s.data[key] = val
	s.mu.Unlock()
}

// Accepted is the number of connections accepted so far.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Open is the number of connections open now (the server notices a peer's close when it next reads).
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Requests is the number of requests received so far, on all connections.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// ProtocolErrors is the number of connections closed because a request was not valid RESP.
func (s *Server) ProtocolErrors() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protoErr
}

// Log returns a copy of every request received so far, in arrival order.
func (s *Server) Log() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.log...)
}

// Done is closed when the server closes.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops listening, closes every connection and waits for the server's goroutines. It is idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			_ = nc.Close()
			return
		default:
		}
		s.accepted++
		c := &Conn{ID: s.accepted, srv: s, nc: nc}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve reads requests off c and hands them to the handler until the connection ends.
func (s *Server) serve(c *Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	var p resp.CommandParser
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		for {
			args, n, err := p.Parse(buf)
			if err != nil {
				s.mu.Lock()
				s.protoErr++
				s.mu.Unlock()
				c.Write(resp.AppendError(nil, "ERR "+err.Error()))
				return
			}
			if n == 0 {
				break
			}
			if args != nil {
				s.record(c, args)
				(*s.handler.Load())(c, args)
				if c.closed.Load() {
					return
				}
			}
			buf = buf[n:]
		}
		n, err := c.nc.Read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
	}
}

func (s *Server) record(c *Conn, args [][]byte) {
	cmd := Command{Conn: c.ID, Args: make([]string, len(args))}
	for i, a := range args {
		cmd.Args[i] = string(a)
	}
	s.mu.Lock()
	s.requests++
	s.log = append(s.log, cmd)
	s.mu.Unlock()
}

// Conn is one client connection of a Server. Its write methods may be called from any goroutine (a test may
// push an unsolicited reply while the handler is idle); each call writes its bytes without interleaving with
// another call's.
type Conn struct {
	ID int // 1 for the server's first connection, 2 for the next, ...

	srv    *Server
	nc     net.Conn
	wmu    sync.Mutex
	closed atomic.Bool
	authed bool // owned by the connection's goroutine
}

// Server is the server the connection belongs to.
func (c *Conn) Server() *Server { return c.srv }

// Done is closed when the server closes.
func (c *Conn) Done() <-chan struct{} { return c.srv.done }

// Write sends b as is (any bytes). Errors are ignored: the peer may have gone, which is often the point.
func (c *Conn) Write(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.nc.Write(b)
}

// WriteChunks sends b in pieces of next() bytes (at least 1), one write each, sleeping pause between pieces
// (0: no sleep, only the write boundary). It stops early when the server closes.
func (c *Conn) WriteChunks(b []byte, next func() int, pause time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(b) > 0 {
		n := min(max(next(), 1), len(b))
		if _, err := c.nc.Write(b[:n]); err != nil {
			return
		}
		b = b[n:]
		if len(b) > 0 && pause > 0 && !c.Sleep(pause) {
			return
		}
	}
}

// Sleep pauses the handler for d, or less if the server closes; it reports whether the whole d passed.
func (c *Conn) Sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.srv.done:
		return false
	}
}

// Close closes the connection; the handler's later writes are dropped and requests already read are not
// handled.
func (c *Conn) Close() {
	c.closed.Store(true)
	_ = c.nc.Close()
}

// OK answers +OK.
func (c *Conn) OK() { c.Write(resp.AppendOK(nil)) }

// Simple answers a simple string.
func (c *Conn) Simple(s string) { c.Write(resp.AppendSimple(nil, s)) }

// Error answers an error reply; msg starts with the code ("ERR ...").
func (c *Conn) Error(msg string) { c.Write(resp.AppendError(nil, msg)) }

// Bulk answers a bulk string.
func (c *Conn) Bulk(b []byte) { c.Write(resp.AppendBulk(nil, b)) }

// Null answers a null bulk string.
func (c *Conn) Null() { c.Write(resp.AppendNullBulk(nil)) }

// Int answers an integer.
func (c *Conn) Int(n int64) { c.Write(resp.AppendInt(nil, n)) }

// Moved answers -MOVED slot addr.
func (c *Conn) Moved(slot int, addr string) { c.Error(Moved(slot, addr)) }

// Ask answers -ASK slot addr.
func (c *Conn) Ask(slot int, addr string) { c.Error(Ask(slot, addr)) }

// TryAgain answers Redis's -TRYAGAIN for a multi-key request during a slot migration.
func (c *Conn) TryAgain() { c.Error(TryAgainText) }

// TryAgainText is the text of Redis's TRYAGAIN error (cluster.c getNodeByQuery).
const TryAgainText = "TRYAGAIN Multiple keys request during rehashing of slot"

// Moved is the text of a MOVED error, without the '-'.
func Moved(slot int, addr string) string { return "MOVED " + strconv.Itoa(slot) + " " + addr }

// Ask is the text of an ASK error, without the '-'.
func Ask(slot int, addr string) string { return "ASK " + strconv.Itoa(slot) + " " + addr }

// Default answers like a tiny Redis: PING, ECHO, GET, SET, DEL, AUTH, ASKING, READONLY and READWRITE, with
// Redis's replies and error texts. With RequirePass set, every other command fails with NOAUTH until AUTH
// succeeds on the connection. Anything else gets Redis's unknown-command error.
func Default(c *Conn, args [][]byte) {
	s := c.srv
	name := strings.ToUpper(string(args[0]))
	s.mu.Lock()
	user, pass := s.user, s.pass
	s.mu.Unlock()
	if pass != "" && !c.authed && name != "AUTH" {
		c.Error("NOAUTH Authentication required.")
		return
	}
	switch {
	case name == "PING" && len(args) == 1:
		c.Simple("PONG")
	case name == "PING" && len(args) == 2, name == "ECHO" && len(args) == 2:
		c.Bulk(args[1])
	case name == "GET" && len(args) == 2:
		s.mu.Lock()
		v, ok := s.data[string(args[1])]
		s.mu.Unlock()
		if ok {
			c.Bulk([]byte(v))
		} else {
			c.Null()
		}
	case name == "SET" && len(args) == 3:
		s.Set(string(args[1]), string(args[2]))
		c.OK()
	case name == "DEL" && len(args) >= 2:
		var n int64
		s.mu.Lock()
		for _, k := range args[1:] {
			if _, ok := s.data[string(k)]; ok {
				delete(s.data, string(k))
				n++
			}
		}
		s.mu.Unlock()
		c.Int(n)
	case name == "AUTH" && (len(args) == 2 || len(args) == 3):
		u, p := "", string(args[len(args)-1])
		if len(args) == 3 {
			u = string(args[1])
		}
		if pass == "" {
			c.Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			return
		}
		if p != pass || (u != user && !(u == "default" && user == "")) {
			c.Error("WRONGPASS invalid username-password pair or user is disabled.")
			return
		}
		c.authed = true
		c.OK()
	case (name == "ASKING" || name == "READONLY" || name == "READWRITE") && len(args) == 1:
		c.OK()
	default:
		c.Error(unknownCommand(args))
	}
}

// unknownCommand is Redis's error for a command it does not have (server.c processCommand), or for a known
// one with the wrong number of arguments, which this server does not tell apart.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(args[0])
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		b.WriteString("'")
		b.Write(a)
		b.WriteString("' ")
	}
	return b.String()
}
