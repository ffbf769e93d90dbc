package topology

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what the Manager needs to find and follow the cluster. Zero values take the documented defaults.
type Config struct {
	// TLS, if set, is used on every connection to a node (ServerName, when empty, is the node's host).
	TLS             *tls.Config
	Seeds           []string      // host:port of nodes to ask when no map is known (and as a last resort)
	RefreshInterval time.Duration // periodic refresh; 0: 5s; negative: none (only RequestRefresh and retries)
	MinRefreshGap   time.Duration // least time from the end of one refresh to a requested one; 0: 100ms
	DialTimeout     time.Duration // per node; 0: 1s
	ReadTimeout     time.Duration // per node, for the whole exchange; 0: 2s
	Username        string        // ACL user for AUTH on control connections; empty: the default user
	Password        string        // AUTH password; empty: no AUTH
	Logger          *slog.Logger  // nil: slog.Default()
}

const (
	reasonBootstrap = iota
	reasonPeriodic
	reasonRequested
	reasonRetry
)

func unixOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

const (
	defaultRefreshInterval = 5 * time.Second
	defaultMinRefreshGap   = 100 * time.Millisecond
	defaultDialTimeout     = time.Second
	defaultReadTimeout     = 2 * time.Second

	retryMin      = 100 * time.Millisecond // first retry after a round in which no node answered
	retryMax      = 2 * time.Second        // cap of the doubling retry delay
	suspectFor    = 30 * time.Second       // a node that failed is asked last for this long
	warnEvery     = 30 * time.Second       // repeats of a failure warning while it lasts
	refreshSignal = 1                      // capacity of the request channel: one pending refresh
)

// Stats counts what a Manager did. All counters only grow.
type Stats struct {
	Requests  uint64 // RequestRefresh calls
	Refreshes uint64 // refresh rounds run: bootstrap attempts, periodic, requested and retries
	Failures  uint64 // rounds in which no node gave a usable map
	Swaps     uint64 // snapshots published (== the current Version)
	Skipped   uint64 // periodic rounds skipped because a peer polls for this proxy (SetPollGate)
	// Rounds by what started them: the first map, the period, a RequestRefresh, a retry after a failure.
	Bootstrap, Periodic, Requested, Retries uint64
	LastOK                                  time.Time // end of the last round that read a full map; zero: none yet
}

// Manager keeps the current slot map. One goroutine (started by Start) owns every refresh: it asks the
// seeds until a full map is known, then refreshes periodically and whenever RequestRefresh asks. Requests are
// coalesced: while a refresh runs, any number of requests make one more refresh, no sooner than
// MinRefreshGap after the running one ends.
//
// A refresh asks the nodes of the current map (masters first, then replicas, each group in random order,
// nodes that failed recently last), then the seeds, and takes the first full map whose config epoch is not
// older than the newest one seen (so a node that has not heard of a failover yet cannot roll the map
// back; if every node is behind, the newest answer wins, which covers a rebuilt cluster). A map that leaves
// a slot unserved is never published. A new Snapshot is published only when the routing changed.
type Manager struct {
	cfg     Config
	tlsConf atomic.Pointer[tls.Config] // cfg.TLS, or what SetTLS set since
	snap    atomic.Pointer[Snapshot]
	kick    chan struct{} // a requested refresh, pending
	ready   chan struct{} // closed with the first map
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns

	startOnce sync.Once
	started   atomic.Bool
	readyOnce sync.Once

	subsMu sync.Mutex // guards subs and polled
	subs   []func(*Snapshot)
	polled []func(*Snapshot)
	gate   atomic.Pointer[func() bool]
	seedsP atomic.Pointer[[]string] // cfg.Seeds, or those SetSeeds gave

	requests, refreshes, failures, swaps, skipped atomic.Uint64
	byReason                                      [4]atomic.Uint64 // bootstrap, periodic, requested, retry
	lastOK                                        atomic.Int64     // unix ns

	// Owned by the run goroutine.
	version  uint64               // of the current snapshot
	epoch    uint64               // highest config epoch seen
	suspects map[string]time.Time // node → when it last failed to answer
	kept     *controlConn         // the connection of the last answer, asked first next time
}

// controlConn is a connection refreshes ask over; kept open between them, so that a periodic refresh is one
// round trip rather than a dial, a round trip and a close.
type controlConn struct {
	addr   string
	tls    *tls.Config // what it was dialled with: another SetTLS dials anew
	c      net.Conn
	r      *bufio.Reader
	authed bool
}

// NewManager makes a manager; Start runs it.
func NewManager(cfg Config) *Manager {
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaultRefreshInterval
	}
	if cfg.MinRefreshGap <= 0 {
		cfg.MinRefreshGap = defaultMinRefreshGap
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = defaultReadTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Seeds = append([]string(nil), cfg.Seeds...)
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg:      cfg,
		kick:     make(chan struct{}, refreshSignal),
		ready:    make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		suspects: make(map[string]time.Time),
	}
	m.tlsConf.Store(cfg.TLS)
	return m
}

// Start launches the refresh goroutine. Calls after the first, or after Close, do nothing.
func (m *Manager) Start() {
	m.startOnce.Do(func() {
		if m.ctx.Err() != nil {
			return
		}
		m.started.Store(true)
		go m.run()
	})
}

// Close stops the refresh goroutine, interrupting a refresh in progress, and waits for it to return.
func (m *Manager) Close() {
	m.cancel()
	m.startOnce.Do(func() {}) // a Start after Close must not start anything
	if m.started.Load() {
		<-m.done
	}
}

// Snapshot is the current map, nil until the first one. Safe from any goroutine; it takes no lock.
func (m *Manager) Snapshot() *Snapshot { return m.snap.Load() }

// Ready is closed once the first map is published.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// RequestRefresh asks for a refresh soon (evidence that the map is stale: MOVED, a lost node,
// CLUSTERDOWN). It never blocks and is safe from any goroutine; a burst of calls makes one refresh.
func (m *Manager) RequestRefresh() {
	m.requests.Add(1)
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Subscribe registers fn to be called with each newly published snapshot, on the Manager's goroutine, in
// the order of publication. fn must return quickly and must not call Close. Snapshots published before
// Subscribe are not replayed: read Snapshot after subscribing.
func (m *Manager) Subscribe(fn func(*Snapshot)) {
	m.subsMu.Lock()
	m.subs = append(m.subs, fn)
	m.subsMu.Unlock()
}

// SetSeeds replaces the seeds, from the next refresh on. Safe from any goroutine.
func (m *Manager) SetSeeds(seeds []string) {
	seeds = append([]string(nil), seeds...)
	m.seedsP.Store(&seeds)
}

func (m *Manager) seeds() []string {
	if p := m.seedsP.Load(); p != nil {
		return *p
	}
	return m.cfg.Seeds
}

// OnPoll registers fn to be called after every round that read a full map from the cluster, whether or
// not the routing changed, with the current snapshot; same rules as Subscribe.
func (m *Manager) OnPoll(fn func(*Snapshot)) {
	m.subsMu.Lock()
	m.polled = append(m.polled, fn)
	m.subsMu.Unlock()
}

// SetPollGate makes each periodic round ask poll first, and skip the round when it says false (a peer
// polls the cluster for this proxy and says so). Bootstrap, retries and requested refreshes always run.
func (m *Manager) SetPollGate(poll func() bool) { m.gate.Store(&poll) }

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Requests:  m.requests.Load(),
		Refreshes: m.refreshes.Load(),
		Failures:  m.failures.Load(),
		Swaps:     m.swaps.Load(),
		Skipped:   m.skipped.Load(),
		Bootstrap: m.byReason[reasonBootstrap].Load(),
		Periodic:  m.byReason[reasonPeriodic].Load(),
		Requested: m.byReason[reasonRequested].Load(),
		Retries:   m.byReason[reasonRetry].Load(),
		LastOK:    unixOrZero(m.lastOK.Load()),
	}
}

func (m *Manager) run() {
	defer close(m.done)
	defer m.dropKept()
	log := m.cfg.Logger
	timer := time.NewTimer(0) // bootstrap at once
	defer timer.Stop()
	var (
		lastEnd  time.Time // end of the last refresh
		failures int       // consecutive failed rounds
		warned   time.Time // last failure warning
		lastErr  string    // its message
		periodic bool      // the timer is set for a periodic round
		kicked   bool      // this round answers a RequestRefresh
	)
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			kicked = true
			if wait := m.cfg.MinRefreshGap - time.Since(lastEnd); wait > 0 {
				timer.Reset(wait) // the timer fires the requested refresh after the gap
				periodic = false
				continue
			}
		case <-timer.C:
			if gate := m.gate.Load(); periodic && gate != nil && !(*gate)() {
				m.skipped.Add(1)
				timer.Reset(m.cfg.RefreshInterval)
				continue
			}
		}
		switch {
		case m.snap.Load() == nil:
			m.byReason[reasonBootstrap].Add(1)
		case kicked:
			m.byReason[reasonRequested].Add(1)
		case periodic:
			m.byReason[reasonPeriodic].Add(1)
		default:
			m.byReason[reasonRetry].Add(1)
		}
		periodic, kicked = false, false
		// This refresh answers every request made until now.
		select {
		case <-m.kick:
		default:
		}
		err := m.refresh()
		lastEnd = time.Now()
		if m.ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			m.failures.Add(1)
			// Warn at the first failure, when the reason changes, and every warnEvery while it lasts.
			if failures == 1 || err.Error() != lastErr || time.Since(warned) >= warnEvery {
				warned, lastErr = time.Now(), err.Error()
				if m.snap.Load() == nil {
					log.Warn("topology: no seed answered CLUSTER SLOTS with a full slot map; retrying",
						"seeds", strings.Join(m.seeds(), ","), "attempts", failures, "err", err)
				} else {
					log.Warn("topology: slot map refresh failed; keeping the current map",
						"version", m.version, "attempts", failures, "err", err)
				}
			}
			wait := min(retryMin<<min(failures-1, 10), retryMax)
			if m.cfg.RefreshInterval > 0 {
				wait = min(wait, m.cfg.RefreshInterval)
			}
			timer.Reset(wait)
			continue
		}
		m.lastOK.Store(lastEnd.UnixNano())
		if failures > 0 {
			log.Info("topology: cluster answers again", "failed_attempts", failures)
			failures = 0
		}
		m.subsMu.Lock()
		polled := m.polled
		m.subsMu.Unlock()
		for _, fn := range polled {
			m.notify(fn, m.snap.Load())
		}
		if m.cfg.RefreshInterval > 0 {
			timer.Reset(m.cfg.RefreshInterval)
			periodic = true
		}
	}
}

// refresh runs one round (see Manager) and publishes its map if the routing changed.
func (m *Manager) refresh() error {
	m.refreshes.Add(1)
	var (
		errs     []string
		best     *Snapshot // the newest map from nodes behind m.epoch
		bestFrom string
	)
	for _, addr := range m.candidates() {
		if m.ctx.Err() != nil {
			return m.ctx.Err()
		}
		s, err := m.fetch(addr)
		if err != nil {
			m.suspects[addr] = time.Now()
			errs = append(errs, addr+": "+err.Error())
			continue
		}
		delete(m.suspects, addr)
		if s.Epoch != 0 && s.Epoch < m.epoch {
			if best == nil || s.Epoch > best.Epoch {
				best, bestFrom = s, addr
			}
			continue
		}
		m.adopt(s, addr)
		return nil
	}
	if best != nil {
		m.adopt(best, bestFrom)
		return nil
	}
	if len(errs) == 0 {
		return errors.New("no node to ask: no seeds configured")
	}
	slices.Sort(errs) // the same trouble gives the same message, whatever order the nodes were asked in
	return errors.New(strings.Join(errs, "; "))
}

// candidates lists the nodes to ask, in order, each once.
func (m *Manager) candidates() []string {
	var masters, replicas []string
	if cur := m.snap.Load(); cur != nil {
		for _, sh := range cur.Shards {
			masters = append(masters, cur.Nodes[sh.Master].Addr)
			for _, r := range sh.Replicas {
				replicas = append(replicas, cur.Nodes[r].Addr)
			}
		}
		rand.Shuffle(len(masters), func(i, j int) { masters[i], masters[j] = masters[j], masters[i] })
		rand.Shuffle(len(replicas), func(i, j int) { replicas[i], replicas[j] = replicas[j], replicas[i] })
	}
	seen := make(map[string]bool)
	var good, suspect []string
	first := masters
	if k := m.kept; k != nil && slices.Contains(masters, k.addr) {
		first = []string{k.addr}
	}
	for _, group := range [][]string{first, masters, replicas, m.seeds()} {
		for _, a := range group {
			if seen[a] {
				continue
			}
			seen[a] = true
			if t, ok := m.suspects[a]; ok && time.Since(t) < suspectFor {
				suspect = append(suspect, a)
			} else {
				good = append(good, a)
			}
		}
	}
	for a, t := range m.suspects {
		if time.Since(t) >= suspectFor || !seen[a] {
			delete(m.suspects, a)
		}
	}
	return append(good, suspect...)
}

// adopt publishes s unless it routes like the current map.
func (m *Manager) adopt(s *Snapshot, from string) {
	m.epoch = max(m.epoch, s.Epoch)
	cur := m.snap.Load()
	if s.sameRouting(cur) {
		return
	}
	m.version++
	s.Version = m.version
	m.snap.Store(s)
	m.swaps.Add(1)
	m.cfg.Logger.Info("topology: slot map updated", "version", s.Version, "from", from, "epoch", s.Epoch,
		"shards", len(s.Shards), "nodes", len(s.Nodes), "masters", strings.Join(s.MasterAddrs(), ","),
		"moved_slots", s.movedSlots(cur))
	m.readyOnce.Do(func() { close(m.ready) })

	m.subsMu.Lock()
	subs := m.subs
	m.subsMu.Unlock()
	for _, fn := range subs {
		m.notify(fn, s)
	}
}

func (m *Manager) notify(fn func(*Snapshot), s *Snapshot) {
	defer func() {
		if p := recover(); p != nil {
			m.cfg.Logger.Error("topology: snapshot subscriber panicked", "panic", p)
		}
	}()
	fn(s)
}

// SetTLS makes conf the TLS configuration of the next connections to the nodes (nil: plain TCP).
func (m *Manager) SetTLS(conf *tls.Config) { m.tlsConf.Store(conf) }

// ForAddr is conf for a connection to addr: with the node's host as ServerName when conf names none, so that
// the node's certificate is checked against the address it was reached at.
func ForAddr(conf *tls.Config, addr string) *tls.Config {
	if conf.ServerName != "" || conf.InsecureSkipVerify {
		return conf
	}
	c := conf.Clone()
	c.ServerName, _, _ = net.SplitHostPort(addr)
	return c
}

// fetch asks one node for CLUSTER SLOTS (and CLUSTER NODES, for the config epoch): over the kept connection
// when it goes to addr, else (or when that one fails: the node may have closed it) over a fresh one, which is
// kept in its place.
func (m *Manager) fetch(addr string) (*Snapshot, error) {
	conf := m.tlsConf.Load()
	if k := m.kept; k != nil && (k.addr != addr || k.tls != conf) {
		m.dropKept()
	}
	if m.kept != nil {
		s, broken, err := m.ask(m.kept)
		if !broken {
			return s, err
		}
		m.dropKept()
	}
	d := net.Dialer{Timeout: m.cfg.DialTimeout}
	var c net.Conn
	var err error
	if conf != nil {
		td := tls.Dialer{NetDialer: &d, Config: ForAddr(conf, addr)}
		c, err = td.DialContext(m.ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(m.ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	k := &controlConn{addr: addr, tls: conf, c: c, r: bufio.NewReaderSize(c, 16<<10)}
	s, broken, err := m.ask(k)
	if broken {
		_ = c.Close()
	} else {
		m.kept = k
	}
	return s, err
}

func (m *Manager) dropKept() {
	if m.kept != nil {
		_ = m.kept.c.Close()
		m.kept = nil
	}
}

// ask sends a refresh's commands over k (AUTH first on a new connection) and reads every answer before it
// looks at them, so that k stays in step for the next refresh. broken: k is not, and must be closed.
func (m *Manager) ask(k *controlConn) (s *Snapshot, broken bool, err error) {
	c, r := k.c, k.r
	_ = c.SetDeadline(time.Now().Add(m.cfg.ReadTimeout))
	// Close interrupts the exchange (after the deadline above, so that it is not overwritten).
	defer context.AfterFunc(m.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })()

	var req []byte
	auth := m.cfg.Password != "" && !k.authed
	if auth {
		if m.cfg.Username != "" {
			req = appendCommand(req, "AUTH", m.cfg.Username, m.cfg.Password)
		} else {
			req = appendCommand(req, "AUTH", m.cfg.Password)
		}
	}
	req = appendCommand(req, "CLUSTER", "SLOTS")
	req = appendCommand(req, "CLUSTER", "NODES")
	if _, err := c.Write(req); err != nil {
		return nil, true, err
	}
	var authReply value
	if auth {
		if authReply, err = readValue(r, 0); err != nil {
			return nil, true, err
		}
	}
	slots, err := readValue(r, 0)
	if err != nil {
		return nil, true, err
	}
	// CLUSTER NODES may be refused to a restricted ACL user: then the epoch stays unknown (0).
	nodes, err := readValue(r, 0)
	if err != nil {
		return nil, true, err
	}
	if auth {
		if authReply.isError() {
			return nil, true, fmt.Errorf("AUTH: %s", authReply.str)
		}
		k.authed = true
	}
	if s, err = fromSlotsValue(slots, k.addr); err != nil {
		return nil, false, err
	}
	if !nodes.isError() {
		s.Epoch = maxConfigEpoch(nodes)
	}
	return s, false, nil
}
