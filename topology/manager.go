package topology

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotproxy/slotproxy/resp"
)

// Config is what the Manager needs to find and follow the cluster.
type Config struct {
	Seeds           []string      // nodes to ask first; any one is enough
	RefreshInterval time.Duration // periodic refresh (default 5s)
	MinRefreshGap   time.Duration // least time between two refreshes asked for by RequestRefresh (default 100ms)
	DialTimeout     time.Duration // default 1s
	ReadTimeout     time.Duration // default 2s
	Username        string        // AUTH user for control connections
	Password        string        // AUTH password; empty: no AUTH
	Logger          *slog.Logger
}

// Manager keeps the current slot map. One goroutine refreshes it: at start until a map is known, then
// periodically and whenever RequestRefresh asks (coalesced: one refresh in flight, at most one pending).
type Manager struct {
	cfg   Config
	snap  atomic.Pointer[Snapshot]
	kick  chan struct{} // capacity 1: a pending refresh request
	ready chan struct{} // closed after the first map
	stop  chan struct{}
	done  chan struct{}

	readyOnce sync.Once
	stopOnce  sync.Once
	version   uint64       // owned by the refresh goroutine
	refreshes atomic.Int64 // CLUSTER SLOTS rounds run, for tests and metrics
}

// NewManager makes a manager; Start runs it.
func NewManager(cfg Config) *Manager {
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Second
	}
	if cfg.MinRefreshGap <= 0 {
		cfg.MinRefreshGap = 100 * time.Millisecond
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{
		cfg:   cfg,
		kick:  make(chan struct{}, 1),
		ready: make(chan struct{}),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Start launches the refresh goroutine.
func (m *Manager) Start() { go m.run() }

// Snapshot is the current map, nil until the first one. Safe from any goroutine; no locks.
func (m *Manager) Snapshot() *Snapshot { return m.snap.Load() }

// Ready is closed once a map is known.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Refreshes counts refresh rounds so far.
func (m *Manager) Refreshes() int64 { return m.refreshes.Load() }

// RequestRefresh asks for a refresh soon. It never blocks; a burst of calls makes one refresh.
func (m *Manager) RequestRefresh() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Close stops the goroutine and waits for it.
func (m *Manager) Close() {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
}

func (m *Manager) run() {
	defer close(m.done)
	failures := 0
	for {
		err := m.refresh()
		var wait time.Duration
		if err != nil {
			failures++
			if failures == 1 || failures%20 == 0 {
				m.cfg.Logger.Warn("no node answered CLUSTER SLOTS with a full slot map; retrying",
					"attempts", failures, "err", err)
			}
			wait = min(50*time.Millisecond<<min(failures, 5), time.Second)
			if m.snap.Load() != nil {
				wait = m.cfg.MinRefreshGap
			}
		} else {
			failures = 0
			wait = m.cfg.RefreshInterval
		}
		timer := time.NewTimer(wait)
		select {
		case <-m.stop:
			timer.Stop()
			return
		case <-timer.C:
		case <-m.kick:
			timer.Stop()
			// Let a burst settle, so one refresh answers it.
			select {
			case <-m.stop:
				return
			case <-time.After(m.cfg.MinRefreshGap):
			}
			select {
			case <-m.kick:
			default:
			}
		}
	}
}

// refresh asks the known nodes (masters first, in random order) and then the seeds, and adopts the first full
// map.
func (m *Manager) refresh() error {
	m.refreshes.Add(1)
	var candidates []string
	seen := map[string]bool{}
	add := func(addrs ...string) {
		for _, a := range addrs {
			if !seen[a] {
				seen[a] = true
				candidates = append(candidates, a)
			}
		}
	}
	if cur := m.snap.Load(); cur != nil {
		masters := cur.MasterAddrs()
		rand.Shuffle(len(masters), func(i, j int) { masters[i], masters[j] = masters[j], masters[i] })
		add(masters...)
		var others []string
		for _, n := range cur.Nodes {
			others = append(others, n.Addr)
		}
		rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		add(others...)
	}
	add(m.cfg.Seeds...)
	var errs []string
	for _, addr := range candidates {
		s, err := m.fetch(addr)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		m.adopt(s, addr)
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

func (m *Manager) adopt(s *Snapshot, from string) {
	cur := m.snap.Load()
	if s.sameAs(cur) {
		return
	}
	m.version++
	s.Version = m.version
	m.snap.Store(s)
	m.cfg.Logger.Info("slot map updated", "version", s.Version, "from", from, "shards", len(s.Shards),
		"nodes", len(s.Nodes), "masters", strings.Join(s.MasterAddrs(), ","))
	m.readyOnce.Do(func() { close(m.ready) })
}

// fetch runs CLUSTER SLOTS on one node over a plain connection with deadlines.
func (m *Manager) fetch(addr string) (*Snapshot, error) {
	c, err := net.DialTimeout("tcp", addr, m.cfg.DialTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(m.cfg.ReadTimeout))
	var req []byte
	if m.cfg.Password != "" {
		if m.cfg.Username != "" {
			req = resp.AppendCommandStrings(req, "AUTH", m.cfg.Username, m.cfg.Password)
		} else {
			req = resp.AppendCommandStrings(req, "AUTH", m.cfg.Password)
		}
	}
	req = resp.AppendCommandStrings(req, "CLUSTER", "SLOTS")
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	var buf []byte
	var sc resp.ReplyScanner
	chunk := make([]byte, 16<<10)
	replies := 0
	for {
		n, err := sc.Scan(buf)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			reply := buf[:n]
			buf = buf[n:]
			replies++
			if m.cfg.Password != "" && replies == 1 {
				if resp.IsError(reply) {
					return nil, fmt.Errorf("AUTH: %s", trimCRLF(reply[1:]))
				}
				continue
			}
			return FromClusterSlots(reply, addr)
		}
		r, err := c.Read(chunk)
		if err != nil {
			return nil, err
		}
		buf = append(buf, chunk[:r]...)
	}
}
