package backend

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// tickPeriod is how often the harness runs Pool.Tick, as the proxy's ticker does (every 100 ms there; shorter
// here so that deadline bounds are tight). A request past its deadline is answered within 2 periods of it.
const tickPeriod = 10 * time.Millisecond

// testConfig is the Config the harness starts from.
func testConfig() Config {
	return Config{
		ConnsPerNode:    1,
		DialTimeout:     2 * time.Second,
		RetryBackoffMin: 2 * time.Millisecond,
		RetryBackoffMax: 20 * time.Millisecond,
		MaxRedirects:    3,
		StallTimeout:    time.Second,
		ReadFrom:        ReadMaster,
	}
}

// fixedTopo is a Topology with one map that never changes.
type fixedTopo struct {
	snap      *topology.Snapshot
	refreshes atomic.Int64
}

func (f *fixedTopo) Snapshot() *topology.Snapshot { return f.snap }
func (f *fixedTopo) RequestRefresh()              { f.refreshes.Add(1) }

// clusterSlots is a CLUSTER SLOTS reply that splits the 16384 slots evenly over addrs, in order: with two
// nodes, slots 0-8191 go to the first and 8192-16383 to the second.
func clusterSlots(addrs ...string) []byte {
	b := resp.AppendArrayHeader(nil, len(addrs))
	for i, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendInt(b, int64(i*topology.NumSlots/len(addrs)))
		b = resp.AppendInt(b, int64((i+1)*topology.NumSlots/len(addrs)-1))
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendBulkString(b, host)
		b = resp.AppendInt(b, int64(p))
		b = resp.AppendBulkString(b, fmt.Sprintf("%040d", i))
	}
	return b
}

func newTopo(t testing.TB, addrs ...string) *fixedTopo {
	t.Helper()
	snap, err := topology.FromClusterSlots(clusterSlots(addrs...), addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	return &fixedTopo{snap: snap}
}

// harness is a real gnet engine with one event loop and a Pool on it, wired as proxy/server.go and
// proxy/loop.go wire theirs: the engine forwards the callbacks of backend connections to their *Conn and
// flushes the pool after OnTraffic and OnClose; a ticker goroutine runs Tick then Flush on the loop through
// Execute, every tickPeriod and whenever the pool's wake func asks.
type harness struct {
	t    *testing.T
	cfg  Config
	topo *fixedTopo
	eng  gnet.Engine
	el   gnet.EventLoop
	pool *Pool // created on the loop; its methods run only there

	wakeAt      atomic.Int64 // earliest wake the pool asked for (unix ns), 0 if none
	tickPending atomic.Bool
	nudge       chan struct{}
	stop        chan struct{}
	tickerDone  chan struct{}
}

// engine is the gnet EventHandler of the harness.
type engine struct {
	gnet.BuiltinEventEngine
	booted chan gnet.Engine
	loops  chan gnet.EventLoop // the dummy client's loop
	pool   *Pool               // set on the loop before any backend connection exists
}

func (e *engine) OnBoot(eng gnet.Engine) gnet.Action {
	e.booted <- eng
	return gnet.None
}

func (e *engine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if bc, ok := c.Context().(*Conn); ok {
		return bc.OnOpen(c), gnet.None // as proxy.Server.OnOpen
	}
	select {
	case e.loops <- c.EventLoop():
	default:
	}
	return nil, gnet.None
}

func (e *engine) OnTraffic(c gnet.Conn) gnet.Action {
	if bc, ok := c.Context().(*Conn); ok {
		bc.OnTraffic(c)
		e.pool.Flush()
		return gnet.None
	}
	_, _ = c.Discard(-1)
	return gnet.None
}

func (e *engine) OnClose(c gnet.Conn, err error) gnet.Action {
	if bc, ok := c.Context().(*Conn); ok {
		bc.OnClose(err)
		e.pool.Flush()
	}
	return gnet.None
}

// newHarness starts an engine and a pool whose map spreads the slots over nodes (see clusterSlots).
func newHarness(t *testing.T, cfg Config, nodes ...*fakeredis.Server) *harness {
	t.Helper()
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	h := &harness{
		t:          t,
		cfg:        cfg,
		topo:       newTopo(t, addrs...),
		nudge:      make(chan struct{}, 1),
		stop:       make(chan struct{}),
		tickerDone: make(chan struct{}),
	}
	e := &engine{booted: make(chan gnet.Engine, 1), loops: make(chan gnet.EventLoop, 1)}
	ran := make(chan error, 1)
	go func() {
		ran <- gnet.Run(e, "tcp://127.0.0.1:0", gnet.WithNumEventLoop(1), gnet.WithLogger(quietGnet{}))
	}()
	select {
	case h.eng = <-e.booted:
	case err := <-ran:
		t.Fatalf("gnet.Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("gnet engine did not boot")
	}
	t.Cleanup(func() {
		// Stop polls for the end every 500 ms; Run returns as soon as the engine is down, and then Stop is
		// cancelled rather than left to notice.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- h.eng.Stop(ctx) }()
		select {
		case <-ran:
			cancel()
		case <-ctx.Done():
			t.Error("gnet.Run did not return within 5 s of engine.Stop")
		}
		if err := <-stopped; err != nil && err != context.Canceled {
			t.Errorf("engine.Stop: %v", err)
		}
	})

	// The loop of a dummy client is the loop the pool lives on.
	dummy, err := net.DialTimeout("tcp", engineAddr(t, h.eng), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dummy.Close() })
	select {
	case h.el = <-e.loops:
	case <-time.After(5 * time.Second):
		t.Fatal("the dummy client was not opened")
	}

	h.onLoop(func() {
		h.pool = NewPool(h.el, &h.cfg, h.topo, testLogger(t), h.wake)
		e.pool = h.pool
	})
	go h.ticker()
	t.Cleanup(func() {
		close(h.stop)
		<-h.tickerDone
	})
	return h
}

// engineAddr is the engine's listening address.
func engineAddr(t *testing.T, eng gnet.Engine) string {
	t.Helper()
	fd, err := eng.Dup()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		t.Fatalf("engine listens on %T", sa)
	}
	return net.JoinHostPort(net.IP(in4.Addr[:]).String(), strconv.Itoa(in4.Port))
}

// onLoop runs f on the event loop and waits for it.
func (h *harness) onLoop(f func()) {
	h.t.Helper()
	done := make(chan struct{})
	err := h.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		defer close(done)
		f()
		return nil
	}))
	if err != nil {
		h.t.Fatalf("Execute: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.t.Fatal("the event loop did not run the task")
	}
}

// send submits the calls in one loop callback, in order, then flushes as the proxy does at the end of a
// callback. It returns once the callback ran.
func (h *harness) send(calls ...*call) {
	h.t.Helper()
	h.onLoop(func() {
		for _, c := range calls {
			c.sent = time.Now()
			h.pool.Send(&c.Request)
		}
		h.pool.Flush()
	})
}

// warm opens the connection to slot's node with a GET of "warm" (any reply but an error will do), so that
// what follows finds it open rather than dialling.
func (h *harness) warm(t *testing.T, slot int) {
	t.Helper()
	c := newCall(slot, "GET", "warm")
	h.send(c)
	if got, _ := c.wait(t, 5*time.Second); resp.IsError(got) {
		t.Fatalf("warm-up: %q", got)
	}
}

// wake is the pool's wake func: it asks the ticker goroutine for a Tick after d. Safe on and off the loop.
func (h *harness) wake(d time.Duration) {
	at := time.Now().Add(d).UnixNano()
	for {
		cur := h.wakeAt.Load()
		if (cur != 0 && cur <= at) || h.wakeAt.CompareAndSwap(cur, at) {
			break
		}
	}
	select {
	case h.nudge <- struct{}{}:
	default:
	}
}

// ticker runs Tick every tickPeriod, and at the times wake asked for, until stop.
func (h *harness) ticker() {
	defer close(h.tickerDone)
	next := time.Now().Add(tickPeriod)
	timer := time.NewTimer(tickPeriod)
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.nudge:
		case <-timer.C:
		}
		now := time.Now()
		due := !now.Before(next)
		if w := h.wakeAt.Load(); w != 0 && w <= now.UnixNano() && h.wakeAt.CompareAndSwap(w, 0) {
			due = true
		}
		if due {
			next = now.Add(tickPeriod)
			h.tick()
		}
		d := time.Until(next)
		if w := h.wakeAt.Load(); w != 0 {
			d = min(d, time.Duration(w-now.UnixNano()))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(d, 0))
	}
}

// tick queues one Tick+Flush on the loop, unless one is already queued.
func (h *harness) tick() {
	if !h.tickPending.CompareAndSwap(false, true) {
		return
	}
	err := h.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		h.tickPending.Store(false)
		h.pool.Tick(time.Now().UnixNano())
		h.pool.Flush()
		return nil
	}))
	if err != nil {
		h.tickPending.Store(false) // the engine stops
	}
}

// call is one request with a Sink that records every reply it gets (there must be exactly one).
type call struct {
	Request
	name string // for messages
	sent time.Time

	mu      sync.Mutex
	replies [][]byte // copies
	at      []time.Time
	done    chan struct{} // closed at the first reply
}

// newCall makes a request for slot with a 5 s deadline.
func newCall(slot int, args ...string) *call {
	short := make([]string, len(args))
	for i, a := range args {
		short[i] = a
		if len(a) > 40 {
			short[i] = fmt.Sprintf("%s...(%d bytes)", a[:20], len(a))
		}
	}
	c := &call{name: fmt.Sprintf("%q", short), done: make(chan struct{})}
	c.Raw = resp.AppendCommandStrings(nil, args...)
	c.Slot = slot
	c.Deadline = time.Now().Add(5 * time.Second).UnixNano()
	c.Sink = c
	return c
}

func (c *call) idempotent() *call { c.Idempotent = true; return c }

func (c *call) timeout(d time.Duration) *call {
	c.Deadline = time.Now().Add(d).UnixNano()
	return c
}

func (c *call) Reply(r *Request, reply []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies = append(c.replies, bytes.Clone(reply))
	c.at = append(c.at, time.Now())
	if len(c.replies) == 1 {
		close(c.done)
	}
}

// wait returns the first reply and when it came, failing the test after timeout.
func (c *call) wait(t *testing.T, timeout time.Duration) ([]byte, time.Time) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("%s: no reply within %v", c.name, timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replies[0], c.at[0]
}

// count is the number of replies so far.
func (c *call) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.replies)
}

// expect waits for c's reply and checks it is exactly want, and the only one.
func (c *call) expect(t *testing.T, want []byte) {
	t.Helper()
	got, _ := c.wait(t, 10*time.Second)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: reply %s, want %s", c.name, show(got), show(want))
	}
	if n := c.count(); n != 1 {
		t.Errorf("%s: %d replies, want 1", c.name, n)
	}
}

// show quotes a reply, eliding the middle of a long one.
func show(b []byte) string {
	if len(b) <= 80 {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("%q...%q (%d bytes)", b[:40], b[len(b)-20:], len(b))
}

// eventually polls cond every millisecond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// bulk is a bulk string reply.
func bulk(s string) []byte { return resp.AppendBulkString(nil, s) }

// lostErr is the reply of a written, non-idempotent request whose connection closed before its reply.
func lostErr(addr string) []byte {
	return []byte("-ERR connection to " + addr + " lost before the reply; the command may or may not have run\r\n")
}

// testLogger logs through t until the test ends, and drops what comes later (a dial goroutine may outlive it).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// quietGnet drops gnet's own logging.
type quietGnet struct{}

func (quietGnet) Debugf(string, ...any) {}
func (quietGnet) Infof(string, ...any)  {}
func (quietGnet) Warnf(string, ...any)  {}
func (quietGnet) Errorf(string, ...any) {}
func (quietGnet) Fatalf(f string, a ...any) {
	panic(fmt.Sprintf(f, a...))
}
