// Package proxy is the client side: a gnet server whose sessions parse RESP requests, route them by hash slot
// to the backend pools of their own event loop, split and merge multi-key commands, answer proxy-local
// commands, and write every reply back in request order.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/internal/tlsloop"
	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/topology"
)

// Version is the proxy's version, printed by -version and INFO.
var Version = "0.1.0"

// readBufferCap is gnet's per-loop read buffer, the most one read takes from one connection. 1 MiB rather
// than gnet's 64 KiB: a 100 KB value then arrives in one read, not two, which made SET of 100 KB values
// half again as fast; the buffer is shared by all the loop's connections, so it costs 1 MiB per loop.
const readBufferCap = 1 << 20

// Topology is the slot map source: topology.Manager in production.
type Topology interface {
	Snapshot() *topology.Snapshot
	RequestRefresh()
}

// Server is one proxy instance: a gnet engine plus the per-loop state.
type Server struct {
	gnet.BuiltinEventEngine

	cfg   *Config    // as loaded at start; never written (Reload changes live, bcfg and the loops)
	live  liveConfig // the values of cfg that CONFIG SET and Reload change at run time: read these, not cfg's
	bcfg  atomic.Pointer[backend.Config]
	bcfg3 atomic.Pointer[backend.Config] // bcfg with Protocol 3, for the pools of RESP3 sessions
	topo  Topology
	log   *slog.Logger

	tickSnap  *topology.Snapshot // the map at the last OnTick (the ticker goroutine's)
	tickSwept time.Time          // when OnTick last woke the loops for the idle sweep
	start     time.Time

	eng     gnet.Engine
	addr    string        // actual listen address, set in OnBoot
	booted  chan struct{} // closed in OnBoot
	stopped chan struct{} // closed when Serve returns

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop // guarded by loopsMu; a loop is added the first time a client lands on it

	nextClientID atomic.Int64
	stats        Stats
	peers        atomic.Pointer[topology.Peers] // the fleet this proxy gossips with; nil without peers
	draining     atomic.Bool                    // Shutdown began (drain.go)
	current      atomic.Pointer[Config]         // cfg with the reloads applied (reload.go)
	ready        readiness                      // the last /readyz probe (health.go)
	slowlog      slowlog                        // SLOWLOG (slowlog.go)
	rates        samplers                       // INFO's instantaneous rates and memory peak (infofields.go)
	runID        string                         // INFO's run_id: random, new at every start

	users                 atomic.Pointer[acl.Users]   // the clients' users (auth.go); replaced by Reload
	aclLog                aclLog                      // ACL LOG
	authLogAt             atomic.Int64                // unix ns of the last failed-authentication log line
	listensBeyondLoopback bool                        // for protected mode
	tls                   atomic.Pointer[tlsListener] // the TLS listener (tls.go); nil without one
}

// Stats are process-wide counters, updated atomically by the loops.
type Stats struct {
	Clients              atomic.Int64    // connected clients
	ClientsTotal         atomic.Int64    // clients accepted since start
	ClientsRejected      atomic.Int64    // refused at max_clients
	DrainRefused         atomic.Int64    // refused while draining
	ProtocolErrors       atomic.Int64    // connections closed for a protocol error
	QueryBufferClosed    atomic.Int64    // connections closed at the query buffer limit
	OutputLimitClosed    atomic.Int64    // connections closed at the output buffer limit
	IdleClosed           atomic.Int64    // connections closed by idle_timeout
	Blocked              atomic.Int64    // clients waiting in a blocking command now
	PutBack              atomic.Int64    // pops of blocking commands put back for clients that had left
	Reloads              atomic.Int64    // configuration reloads applied
	ReloadsFailed        atomic.Int64    // reloads refused: the file could not be read or was not valid
	AuthFailures         atomic.Int64    // AUTH and HELLO AUTH with a wrong user or password
	NoAuth               atomic.Int64    // commands refused with NOAUTH
	Denied               [4]atomic.Int64 // commands refused with NOPERM, by acl.Denial
	ProtectedRefused     atomic.Int64    // clients refused by protected mode
	TLSHandshakeFailures atomic.Int64    // TLS clients whose handshake failed
}

// New makes a server; Serve runs it.
func New(cfg *Config, topo Topology, log *slog.Logger) *Server {
	s := &Server{
		cfg:     cfg,
		topo:    topo,
		log:     log,
		booted:  make(chan struct{}),
		stopped: make(chan struct{}),
		loops:   make(map[gnet.EventLoop]*loop),
	}
	s.setBackendConfig(cfg)
	s.live.init(cfg)
	s.current.Store(cfg)
	s.listensBeyondLoopback = beyondLoopback(cfg.Listen)
	users, err := cfg.ACLUsers()
	if err != nil { // Load and Validate refuse such a file; a Config built in code may still have one
		log.Error("client users not valid; only the default user, without a password, exists", "err", err)
		users, _ = acl.Build(nil, "")
	}
	s.users.Store(users)
	return s
}

// setBackendConfig makes the backend configuration of cfg the one new pools take.
func (s *Server) setBackendConfig(cfg *Config) {
	readFrom, _ := backend.ParseReadPolicy(cfg.ReadFrom)
	b := &backend.Config{
		ConnsPerNode:    cfg.ConnsPerNode,
		DialTimeout:     cfg.DialTimeout.D(),
		RetryBackoffMin: cfg.Retry.BackoffMin.D(),
		RetryBackoffMax: cfg.Retry.BackoffMax.D(),
		MaxRedirects:    cfg.MaxRedirects,
		StallTimeout:    cfg.Timeout.D(),
		Username:        cfg.Username,
		Password:        cfg.Password,
		ReadFrom:        readFrom,
		MaxLeases:       cfg.MaxLeasedConns,
	}
	if conf, err := cfg.BackendTLSConfig(); err == nil { // Validate reported an error already
		b.TLS = conf
	}
	b3 := *b
	b3.Protocol = 3
	s.bcfg.Store(b)
	s.bcfg3.Store(&b3)
}

// EventLoops is the number of event loops for the event_loops setting n: n itself, or for 0 half the CPUs
// the process may use (GOMAXPROCS: the CPU limit of its cgroup, its affinity), at least one. Each loop needs
// about as much CPU again beside it, outside the proxy's code: the kernel's side of its sockets, and on a
// shared host the clients and the nodes. A loop with no core to itself costs more than it brings: its
// clients' requests leave in smaller batches per node (each loop has its own connections), and the loops
// take turns on the cores they share. On 2 CPUs, one loop was 1.25x as fast as two at -P 1 and as fast at
// -P 16 (README, Benchmarks).
func EventLoops(n int) int {
	if n > 0 {
		return n
	}
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// Serve listens and serves until Stop. It returns the engine's error.
func (s *Server) Serve() error {
	defer close(s.stopped)
	s.start = time.Now()
	s.runID = newRunID()
	s.rates.memStartup = readMemory().used
	s.rates.notePeak(s.rates.memStartup)
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTicker(true),
		gnet.WithReadBufferCap(readBufferCap),
	}
	opts = append(opts, gnet.WithNumEventLoop(EventLoops(s.cfg.EventLoops)))
	addrs := []string{"tcp://" + s.cfg.Listen}
	if err := s.prepareTLS(); err != nil {
		close(s.booted)
		return err
	}
	if t := s.tls.Load(); t != nil {
		addrs = append(addrs, "tcp://"+t.listen)
	}
	err := gnet.Rotate(s, addrs, opts...)
	select {
	case <-s.booted:
	default:
		close(s.booted) // failed before boot: unblock Addr
	}
	return err
}

// Addr waits until the server listens and returns its address ("" if it failed to start).
func (s *Server) Addr() string {
	<-s.booted
	return s.addr
}

// Stop stops the engine and waits for Serve to return.
func (s *Server) Stop(ctx context.Context) error {
	<-s.booted
	if s.addr == "" {
		return nil
	}
	err := s.eng.Stop(ctx)
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Topology is the slot map source the server routes by.
func (s *Server) Topology() Topology { return s.topo }

// SetPeers makes the fleet's membership visible in INFO and the metrics.
func (s *Server) SetPeers(p *topology.Peers) { s.peers.Store(p) }

// Stats are the server's counters, for tests and tools in this process.
func (s *Server) Stats() *Stats { return &s.stats }

// BackendTotals are the backend counters of every loop, summed.
type BackendTotals struct {
	Moved, Ask                                   int64
	Retries                                      [backend.NumRetryReasons]int64 // by backend.RetryReason
	TryAgain                                     int64                          // of Retries, TRYAGAIN and LOADING
	Failed, ConnsLost, DialErrors, LeasesRefused int64
}

// BackendStats sums the backend counters of every loop.
func (s *Server) BackendStats() (st BackendTotals) {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	for _, l := range s.loops {
		for _, p := range l.pools() {
			b := &p.Stats
			st.Moved += b.Moved.Load()
			st.Ask += b.Ask.Load()
			for i := range st.Retries {
				st.Retries[i] += b.Retries[i].Load()
			}
			st.Failed += b.Failed.Load()
			st.ConnsLost += b.ConnsLost.Load()
			st.DialErrors += b.DialErrors.Load()
			st.LeasesRefused += b.LeasesRefused.Load()
		}
	}
	st.TryAgain = st.Retries[backend.RetryTryAgain] + st.Retries[backend.RetryLoading]
	return st
}

// onEachLoop runs f on every loop's goroutine, one loop after the other, and returns what each returned, for
// the loops that ran it within 5 s (a later run's result is dropped). f must touch only its loop. Slow: for
// scrapes, admin and reloads, never per request.
func onEachLoop[T any](s *Server, f func(l *loop) T) []T {
	loops := s.loopList()
	var out []T
	for _, l := range loops {
		done := make(chan T, 1)
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			done <- f(l)
			return nil
		}))
		if err != nil {
			continue
		}
		select {
		case v := <-done:
			out = append(out, v)
		case <-time.After(5 * time.Second):
		}
	}
	return out
}

// BackendConns counts backend connections per node over all loops.
func (s *Server) BackendConns() map[string]int {
	total := make(map[string]int)
	for _, m := range onEachLoop(s, func(l *loop) map[string]int {
		m := map[string]int{}
		for _, p := range l.pools() {
			for addr, n := range p.Conns() {
				m[addr] += n
			}
		}
		return m
	}) {
		for addr, n := range m {
			total[addr] += n
		}
	}
	return total
}

// NodeStats sums what every loop's pools did with each node.
func (s *Server) NodeStats() map[string]backend.NodeStats {
	total := make(map[string]backend.NodeStats)
	for _, m := range onEachLoop(s, func(l *loop) []map[string]backend.NodeStats {
		var ms []map[string]backend.NodeStats
		for _, p := range l.pools() {
			ms = append(ms, p.NodeStats())
		}
		return ms
	}) {
		for _, pm := range m {
			for addr, st := range pm {
				t := total[addr]
				t.Add(st)
				total[addr] = t
			}
		}
	}
	return total
}

func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = listenerAddr(eng, s.cfg.Listen)
	if t := s.tls.Load(); t != nil {
		t.addr = listenerAddr(eng, t.listen)
		s.log.Info("proxy listening for TLS clients", "addr", t.addr)
	}
	s.log.Info("proxy listening", "addr", s.addr, "version", Version, "event_loops", EventLoops(s.cfg.EventLoops))
	close(s.booted)
	return gnet.None
}

// listenerAddr is the address gnet's listener for addr is bound to (its port when addr's is 0).
func listenerAddr(eng gnet.Engine, addr string) string {
	fd, err := eng.DupListener("tcp", addr)
	if err != nil {
		return addr
	}
	defer unix.Close(fd)
	return sockAddr(fd, addr)
}

// sockAddr is the local address of socket fd; def if it cannot be read.
func sockAddr(fd int, def string) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return def
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	}
	return def
}

// OnTick runs on gnet's ticker goroutine: it samples INFO's rates, and wakes every loop when the slot map
// changed (for its pool to let go of nodes that left) and once a second with idle_timeout set (for the idle
// sweep); a busy loop ticks on its own. While nothing moves it ticks once a second, so that an idle proxy
// sleeps.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	snap := s.topo.Snapshot()
	sweep := s.live.idleTimeout.Load() > 0 && now.Sub(s.tickSwept) >= idleSweep
	if snap != s.tickSnap || sweep {
		s.tickSnap = snap
		if sweep {
			s.tickSwept = now
		}
		for _, l := range s.loopList() {
			l.wakeNow()
		}
	}
	if s.sampleRates(now) {
		return tickEvery, gnet.None
	}
	return idleSweep, gnet.None
}

func (s *Server) OnShutdown(gnet.Engine) {
	s.log.Info("proxy stopped")
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = newLoop(s, el)
		s.loops[el] = l
	}
	return l
}

func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if bc, ok := c.Context().(*backend.Conn); ok {
		return bc.OnOpen(c), gnet.None
	}
	var tc *tlsloop.Conn
	if p, ok := c.Context().(*tlsloop.Pending); ok {
		if bc, ok := p.User.(*backend.Conn); ok {
			return bc.OnOpenTLS(c, p), gnet.None
		}
		tc = tlsloop.Attach(c, p)
	} else if t := s.tls.Load(); t != nil && t.accepts(c) {
		t.handshake(c) // it comes back here, on this loop, as a Pending
		return nil, gnet.Close
	}
	if refusal := s.refusal(c); refusal != nil {
		if tc != nil { // encrypted, as everything on this connection
			_, _ = tc.Write(refusal)
			return nil, gnet.Close
		}
		return refusal, gnet.Close
	}
	s.stats.Clients.Add(1)
	s.stats.ClientsTotal.Add(1)
	l := s.loopOf(c.EventLoop())
	var sc gnet.Conn = c
	if tc != nil {
		sc = tc
	}
	sess := newSession(l, sc, s.nextClientID.Add(1))
	l.adopt(sess)
	c.SetContext(sess)
	if d := time.Duration(s.live.tcpKeepalive.Load()); d > 0 {
		// As Redis: probes after d of silence, then every d/3, three of them.
		_ = c.SetKeepAlive(true, d, max(d/3, time.Second), 3)
	}
	return nil, gnet.None
}

// refusal is the reply that turns a new client away (draining, protected mode, max_clients), nil if none.
func (s *Server) refusal(c gnet.Conn) []byte {
	switch {
	case s.draining.Load():
		s.stats.DrainRefused.Add(1)
		return errShuttingDown
	case s.protectedFrom(c.RemoteAddr()):
		s.stats.ProtectedRefused.Add(1)
		return protectedDenied
	}
	if limit := s.live.maxClients.Load(); limit > 0 && s.stats.Clients.Load() >= limit {
		s.stats.ClientsRejected.Add(1)
		return errMaxClients
	}
	return nil
}

var errMaxClients = []byte("-ERR max number of clients reached\r\n")

func (s *Server) OnTraffic(c gnet.Conn) (action gnet.Action) {
	switch x := c.Context().(type) {
	case *session:
		defer x.l.recoverPanic(x)
		var tlsErr error
		tc := x.tlsConn()
		if tc != nil {
			tlsErr = tc.Fill(&x.l.tlsScratch) // decrypt what arrived; the session reads the plaintext
		}
		// Bytes that arrived since the last callback: gnet keeps what a paused session left unread.
		if n := x.c.InboundBuffered(); n > int(x.inCounted) {
			x.l.bytesIn.Add(uint64(n - int(x.inCounted)))
		}
		x.l.reads.Add(1)
		x.onTraffic()
		x.inCounted = int32(x.c.InboundBuffered())
		x.l.flush()
		if tc != nil {
			tc.Release()
			if tlsErr != nil && !x.closed { // close_notify, or a record that does not decrypt
				x.closing = true
				if x.queueLen() == 0 {
					_ = c.Close()
				}
			}
		}
	case *backend.Conn:
		l := x.Pool().Owner.(*loop)
		defer l.recoverPanic(nil)
		l.now = time.Now().UnixNano()
		x.OnTraffic(c)
		l.flushAfterReplies()
	}
	return gnet.None
}

func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		s.stats.Clients.Add(-1)
		x.onClose()
	case *backend.Conn:
		l := x.Pool().Owner.(*loop)
		l.now = time.Now().UnixNano()
		x.OnClose(err)
		l.flush()
	}
	return gnet.None
}

// recoverPanic keeps one bad request from taking the process down: it logs the stack and closes the client
// whose request panicked (Style #18).
func (l *loop) recoverPanic(sess *session) {
	if v := recover(); v != nil {
		l.srv.log.Error("panic while serving a client; closing it", "panic", v, "stack", string(debug.Stack()))
		if sess != nil && sess.c != nil {
			_ = sess.c.Close()
		}
	}
}

// gnetLogger routes gnet's own logging into slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.l.Error(fmt.Sprintf(format, args...))
	panic(errors.New(fmt.Sprintf(format, args...)))
}
