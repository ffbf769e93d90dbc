package topology

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Peers is the proxy's membership in a fleet of proxies (hashicorp/memberlist). Each proxy gossips a small
// hint whenever its slot map changes: who says it, a sequence number, the map's config epoch and a digest of
// its routing. A proxy that hears of a newer epoch, or of another routing at the same epoch, refreshes from
// the cluster at once. It never installs a map a peer describes: Redis stays the only source of truth, so a
// wrong or hostile peer can cost a refresh and nothing else, and a lost hint costs at most one refresh
// interval. Receivers relay a hint the first time they see it (the broadcast queue sends it only a few times
// from the proxy that queued it).
type Peers struct {
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	topo  Refresher
	log   *slog.Logger
	name  string

	mu   sync.Mutex
	seq  uint64            // of this proxy's last hint
	last []byte            // this proxy's last hint, encoded, for push/pull anti-entropy
	seen map[string]uint64 // origin → the highest sequence number relayed

	events    chan memberEvent
	done      chan struct{}
	closeOnce sync.Once

	meta     []byte                  // what the others learn of this proxy: its client address
	links    *links                  // to the other facade members' client ports; nil without a client address
	interval time.Duration           // the topology's periodic refresh; 0: every proxy polls
	heard    atomic.Int64            // unix nanoseconds of the poller's last fresh hint that was not behind
	deadMu   sync.Mutex              // guards dead, byes and gone
	dead     map[string]time.Time    // peers found dead (not left) and not back since, when
	byes     map[string]time.Time    // peers that said they leave, when
	gone     map[string]*goneWithout // peers memberlist says went, without a bye yet (settle)

	stats PeerStats
}

// Refresher is what Peers needs of the topology: the current map, and a way to ask for a fresh one.
type Refresher interface {
	Snapshot() *Snapshot
	RequestRefresh()
}

// PeersConfig says where a proxy gossips and whom it joins.
type PeersConfig struct {
	Bind      string   // host:port for gossip, TCP and UDP; port 0: any
	Advertise string   // host:port the others reach it at; empty: Bind
	Join      []string // host:port of peers to join; none: the first of a fleet
	Secret    string   // 16, 24 or 32 bytes (or twice as many hex digits): encrypts gossip; empty: clear
	// OldSecrets are also accepted from peers (never sent with), so that the secret can be rotated one
	// proxy at a time.
	OldSecrets []string
	Profile    string        // lan (default), wan or local: memberlist's timing presets
	Name       string        // unique in the fleet; empty: random
	Logger     *slog.Logger  // nil: slog.Default()
	Leave      time.Duration // how long Close waits to tell the others it leaves; 0: 1s
	// ClientAddr is host:port where clients reach this proxy, for the cluster facade; empty: not in it.
	ClientAddr string
	// RefreshInterval is the topology's periodic refresh. Set, and with a topology that takes a poll gate
	// (*Manager), one proxy of the fleet polls the cluster for all and tells them with a hint after each
	// round (ShouldPoll says when the others poll on their own again).
	RefreshInterval time.Duration
}

// PeerStats counts what Peers did. All counters only grow.
type PeerStats struct {
	HintsSent, HintsReceived, HintRefreshes, Joins, Leaves, Deaths atomic.Uint64
}

type memberEvent struct {
	kind string // joined, left, updated
	name string
	addr string
}

// hint is what a proxy gossips when its map changes: 8 bytes each of seq, epoch and digest, then the origin.
type hint struct {
	origin string
	seq    uint64
	epoch  uint64
	digest uint64
}

const hintMagic = 'H'

func (h hint) encode() []byte {
	b := make([]byte, 0, 25+len(h.origin))
	b = append(b, hintMagic)
	b = binary.BigEndian.AppendUint64(b, h.seq)
	b = binary.BigEndian.AppendUint64(b, h.epoch)
	b = binary.BigEndian.AppendUint64(b, h.digest)
	return append(b, h.origin...)
}

func decodeHint(b []byte) (hint, bool) {
	if len(b) < 26 || b[0] != hintMagic || len(b) > 25+256 {
		return hint{}, false
	}
	return hint{seq: binary.BigEndian.Uint64(b[1:]), epoch: binary.BigEndian.Uint64(b[9:]),
		digest: binary.BigEndian.Uint64(b[17:]), origin: string(b[25:])}, true
}

// Digest is a hash of a map's routing: which node serves each slot. Two proxies with the same map compute
// the same digest.
func Digest(s *Snapshot) uint64 {
	if s == nil {
		return 0
	}
	h := fnv.New64a()
	prev := -1
	for slot, sh := range s.Slots {
		if m := s.Shards[sh].Master; m != prev {
			prev = m
			var b [2]byte
			binary.BigEndian.PutUint16(b[:], uint16(slot))
			h.Write(b[:])
			h.Write([]byte(s.Nodes[m].Addr))
		}
	}
	return h.Sum64()
}

// StartPeers joins (or starts) a fleet and gossips topo's changes. topo is typically a *Manager, whose
// Subscribe it uses when it has one.
func StartPeers(cfg PeersConfig, topo Refresher) (*Peers, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Leave <= 0 {
		cfg.Leave = time.Second
	}
	var mc *memberlist.Config
	switch strings.ToLower(cfg.Profile) {
	case "", "lan":
		mc = memberlist.DefaultLANConfig()
	case "wan":
		mc = memberlist.DefaultWANConfig()
	case "local":
		mc = memberlist.DefaultLocalConfig()
		mc.RetransmitMult = 4 // the local preset's 2 loses broadcasts with 4 members or more
	default:
		return nil, fmt.Errorf("peers profile %q: want lan, wan or local", cfg.Profile)
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("peers bind %q: %w", cfg.Bind, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("peers advertise %q: %w", cfg.Advertise, err)
		}
	}
	if cfg.Secret != "" {
		primary, err := secretKey(cfg.Secret)
		if err != nil {
			return nil, err
		}
		keys := [][]byte{primary}
		for _, o := range cfg.OldSecrets {
			k, err := secretKey(o)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		if mc.Keyring, err = memberlist.NewKeyring(keys, primary); err != nil {
			return nil, fmt.Errorf("peers secret: %w", err)
		}
	} else if len(cfg.OldSecrets) > 0 {
		return nil, errors.New("peers: other secrets without a secret")
	}
	p := &Peers{topo: topo, log: cfg.Logger, seen: map[string]uint64{}, events: make(chan memberEvent, 256),
		done: make(chan struct{}), dead: map[string]time.Time{}, byes: map[string]time.Time{},
		gone: map[string]*goneWithout{}}
	if cfg.ClientAddr != "" {
		h, port, err := net.SplitHostPort(cfg.ClientAddr)
		if ip := net.ParseIP(h); err == nil && (h == "" || ip != nil && ip.IsUnspecified() || port == "0") {
			err = errors.New("no host or port a client can connect to")
		}
		if err != nil {
			return nil, fmt.Errorf("peers client address %q: %w", cfg.ClientAddr, err)
		}
		p.meta = append([]byte{metaClient}, cfg.ClientAddr...)
	}
	p.name = cfg.Name
	if p.name == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		p.name = "slotproxy-" + hex.EncodeToString(b[:])
	}
	mc.Name = p.name
	mc.Delegate, mc.Events = p, p
	mc.Logger = log.New(&memberlistLog{log: cfg.Logger}, "", 0)
	if p.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	p.queue = &memberlist.TransmitLimitedQueue{NumNodes: p.ml.NumMembers, RetransmitMult: mc.RetransmitMult}
	go p.logEvents()
	if p.meta != nil {
		p.links = startLinks(p)
	}
	if len(cfg.Join) > 0 {
		if n, err := p.ml.Join(cfg.Join); err != nil {
			p.log.Warn("peers: could not join any peer yet; the others can still join this one", "join",
				strings.Join(cfg.Join, ","), "err", err)
		} else {
			p.log.Info("peers: joined", "contacted", n, "members", p.ml.NumMembers())
		}
	}
	if m, ok := topo.(interface{ Subscribe(func(*Snapshot)) }); ok {
		m.Subscribe(p.Announce)
	}
	if m, ok := topo.(pollGated); ok && cfg.RefreshInterval > 0 {
		p.interval = cfg.RefreshInterval
		m.OnPoll(p.polled)
		m.SetPollGate(p.ShouldPoll)
	}
	if s := topo.Snapshot(); s != nil {
		p.Announce(s)
	}
	return p, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, errors.New("bad port")
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, n, nil
}

// secretKey reads the shared secret: raw 16, 24 or 32 bytes, or those as hex.
func secretKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && (len(b) == 16 || len(b) == 24 || len(b) == 32) {
		return b, nil
	}
	if n := len(s); n == 16 || n == 24 || n == 32 {
		return []byte(s), nil
	}
	return nil, errors.New("peers secret: want 16, 24 or 32 bytes, or as many bytes in hex")
}

type pollGated interface {
	OnPoll(func(*Snapshot))
	SetPollGate(func() bool)
}

// Poller is the member that polls the cluster for the fleet: the live member with the least name, so
// every proxy picks the same one from the same membership.
func (p *Peers) Poller() string {
	least := p.name
	for _, n := range p.ml.Members() {
		if n.Name < least {
			least = n.Name
		}
	}
	return least
}

// ShouldPoll tells whether this proxy's periodic refresh should run: it is the poller, or no hint of the
// poller's that was not behind this proxy's map came for two intervals (the poller is gone, stuck on an
// old map, or gossip is failing). Asked at each periodic round, so a proxy resumes within three intervals.
func (p *Peers) ShouldPoll() bool {
	if p.interval <= 0 || p.Poller() == p.name {
		return true
	}
	return time.Since(time.Unix(0, p.heard.Load())) >= 2*p.interval
}

// polled is called after each round that read the cluster: the poller tells the others its map is fresh.
func (p *Peers) polled(s *Snapshot) {
	if s != nil && p.Poller() == p.name && p.ml.NumMembers() > 1 {
		p.announce(s)
	}
}

// Name is this proxy's name in the fleet.
func (p *Peers) Name() string { return p.name }

// Addr is where this proxy gossips (host:port).
func (p *Peers) Addr() string { return p.ml.LocalNode().Address() }

// Members counts the live members, this proxy included.
func (p *Peers) Members() int { return p.ml.NumMembers() }

// Stats are the counters.
func (p *Peers) Stats() *PeerStats { return &p.stats }

// Announce tells the fleet that this proxy's map is now s: at once to every member over UDP, and through
// the gossip queue for those the datagram misses.
func (p *Peers) Announce(s *Snapshot) {
	msg := p.announce(s)
	for _, n := range p.ml.Members() {
		if n.Name != p.name {
			_ = p.ml.SendBestEffort(n, msg)
		}
	}
}

// announce queues a new hint for gossip and returns it.
func (p *Peers) announce(s *Snapshot) []byte {
	p.mu.Lock()
	p.seq++
	h := hint{origin: p.name, seq: p.seq, epoch: s.Epoch, digest: Digest(s)}
	p.last = h.encode()
	p.seen[p.name] = h.seq
	msg := p.last
	p.mu.Unlock()
	p.stats.HintsSent.Add(1)
	p.queue.QueueBroadcast(&broadcast{name: "topology/" + h.origin, msg: msg})
	return msg
}

// take handles a hint heard from a peer: relay it once, and refresh if it knows of a newer or other map.
func (p *Peers) take(msg []byte) {
	h, ok := decodeHint(msg)
	if !ok || h.origin == p.name {
		return
	}
	p.mu.Lock()
	fresh := h.seq > p.seen[h.origin]
	if fresh {
		p.seen[h.origin] = h.seq
	}
	p.mu.Unlock()
	if !fresh {
		return
	}
	p.stats.HintsReceived.Add(1)
	p.queue.QueueBroadcast(&broadcast{name: "topology/" + h.origin, msg: bytes.Clone(msg)})
	cur := p.topo.Snapshot()
	if p.interval > 0 && h.origin == p.Poller() && (cur == nil || h.epoch >= cur.Epoch) {
		p.heard.Store(time.Now().UnixNano()) // the poller read the cluster, and is not behind this proxy
	}
	if cur == nil || h.epoch > cur.Epoch || h.epoch == cur.Epoch && h.digest != Digest(cur) {
		p.stats.HintRefreshes.Add(1)
		p.log.Debug("peers: a peer has another slot map; refreshing from the cluster", "peer", h.origin,
			"epoch", h.epoch)
		p.topo.RequestRefresh()
	}
}

// Close tells the others this proxy leaves, then stops gossiping. Later calls do nothing.
func (p *Peers) Close(leave time.Duration) {
	p.closeOnce.Do(func() {
		if leave <= 0 {
			leave = time.Second
		}
		// memberlist tells the others this proxy left, but not in a way they can tell from a death: say
		// so first, over TCP, waiting at most half the leave time for peers that do not answer.
		bye := append([]byte{byeMagic}, p.name...)
		sent := make(chan struct{})
		var wg sync.WaitGroup
		for _, n := range p.ml.Members() {
			if n.Name != p.name {
				wg.Go(func() { _ = p.ml.SendReliable(n, bye) })
			}
		}
		go func() { wg.Wait(); close(sent) }()
		select {
		case <-sent:
		case <-time.After(leave / 2):
		}
		if err := p.ml.Leave(leave); err != nil {
			p.log.Warn("peers: leaving", "err", err)
		}
		_ = p.ml.Shutdown()
		close(p.done)
	})
}

// stop stops gossiping without telling anyone, as a crash would.
func (p *Peers) stop() {
	p.closeOnce.Do(func() {
		_ = p.ml.Shutdown()
		close(p.done)
	})
}

// broadcast is a hint in memberlist's queue; a newer hint of the same origin replaces a queued one.
type broadcast struct {
	name string
	msg  []byte
}

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.name == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// memberlist.Delegate. Every method may run concurrently.

func (p *Peers) NodeMeta(limit int) []byte {
	if len(p.meta) > limit {
		return nil
	}
	return p.meta
}
func (p *Peers) NotifyMsg(b []byte) {
	if len(b) > 1 && b[0] == byeMagic {
		name := string(b[1:])
		p.deadMu.Lock()
		p.byes[name] = time.Now()
		p.deadMu.Unlock()
		p.settle(name) // a bye that came after memberlist's word of the leave
		return
	}
	p.take(b)
}
func (p *Peers) GetBroadcasts(overhead, limit int) [][]byte {
	return p.queue.GetBroadcasts(overhead, limit)
}
func (p *Peers) LocalState(bool) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.last)
}
func (p *Peers) MergeRemoteState(b []byte, _ bool) { p.take(b) }

// memberlist.EventDelegate: called with memberlist's lock held, so it only hands the event on.

func (p *Peers) NotifyJoin(n *memberlist.Node)   { p.event("joined", n) }
func (p *Peers) NotifyLeave(n *memberlist.Node)  { p.event("left", n) }
func (p *Peers) NotifyUpdate(n *memberlist.Node) { p.event("updated", n) }

func (p *Peers) event(kind string, n *memberlist.Node) {
	if n.Name == p.name {
		return
	}
	name, addr := n.Name, n.Address()
	p.deadMu.Lock()
	if kind == "left" && !p.saidBye(name) {
		// memberlist says "left" for a death too. A bye comes over TCP and memberlist's leave by gossip, so
		// a bye sent first can still arrive second: wait for it before calling this a death.
		if p.gone[name] == nil {
			p.gone[name] = &goneWithout{addr: addr, timer: time.AfterFunc(byeWait, func() { p.settle(name) })}
		}
		p.deadMu.Unlock()
		return
	}
	died := false
	if g := p.gone[name]; g != nil && kind == "joined" { // back before any bye: it had died
		g.timer.Stop()
		delete(p.gone, name)
		died = true
	}
	p.note(kind, name)
	p.deadMu.Unlock()
	if died {
		p.count("failed", name, addr)
	}
	p.count(kind, name, addr)
}

// goneWithout is a member that went without a bye, until its bye comes or byeWait passes.
type goneWithout struct {
	addr  string
	timer *time.Timer
}

// settle decides a member that went without a bye: it left if its bye has come since, else it died. It runs
// when the bye comes and byeWait after the member went, whichever is first; the later call finds it decided.
func (p *Peers) settle(name string) {
	p.deadMu.Lock()
	g := p.gone[name]
	if g == nil {
		p.deadMu.Unlock()
		return
	}
	delete(p.gone, name)
	g.timer.Stop()
	kind := "failed"
	if p.saidBye(name) {
		kind = "left"
	}
	p.note(kind, name)
	p.deadMu.Unlock()
	p.count(kind, name, g.addr)
}

// saidBye tells whether name said it leaves within byeFor. The caller holds deadMu.
func (p *Peers) saidBye(name string) bool {
	at, ok := p.byes[name]
	return ok && time.Since(at) <= byeFor
}

// note records what happened to name in dead and byes. The caller holds deadMu.
func (p *Peers) note(kind, name string) {
	if kind != "updated" {
		delete(p.byes, name)
	}
	switch kind {
	case "failed":
		p.dead[name] = time.Now()
	case "joined":
		delete(p.dead, name)
	}
}

// count logs what happened to a member and counts it.
func (p *Peers) count(kind, name, addr string) {
	select {
	case p.events <- memberEvent{kind: kind, name: name, addr: addr}:
	default: // a burst the log cannot keep up with: the counters still count
	}
	switch kind {
	case "joined":
		p.stats.Joins.Add(1)
	case "left":
		p.stats.Leaves.Add(1)
	case "failed":
		p.stats.Deaths.Add(1)
	}
}

func (p *Peers) logEvents() {
	for {
		select {
		case e := <-p.events:
			p.log.Info("peers: peer "+e.kind, "peer", e.name, "addr", e.addr)
		case <-p.done:
			return
		}
	}
}

// memberlistLog turns memberlist's "[LEVEL] memberlist: ..." lines into slog records; DEBUG is dropped.
type memberlistLog struct{ log *slog.Logger }

func (w *memberlistLog) Write(b []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "[DEBUG]"):
		case strings.HasPrefix(line, "[ERR]"):
			w.log.Warn("peers: " + strings.TrimSpace(strings.TrimPrefix(line, "[ERR]")))
		case strings.HasPrefix(line, "[WARN]"):
			w.log.Warn("peers: " + strings.TrimSpace(strings.TrimPrefix(line, "[WARN]")))
		default:
			w.log.Info("peers: " + strings.TrimSpace(strings.TrimPrefix(line, "[INFO]")))
		}
	}
	return len(b), nil
}

// metaClient starts a member's meta: the rest is its client address.
const metaClient = 'c'

const (
	byeMagic = 'B'         // a message saying its sender leaves; the rest is its name
	byeFor   = time.Minute // how long a bye explains a member's going as a leave
	byeWait  = time.Second // how long a member that went without a bye waits for it before it counts as dead
	deadFor  = time.Hour   // how long a peer found dead is counted as such
)

// MemberCounts counts the live members (this proxy included) and the peers found dead in the last hour
// that have not come back; a peer that left is not dead. memberlist v0.7 keeps a member's suspicion to
// itself (Node.State is never set), so a suspect member counts as live until it is found dead.
func (p *Peers) MemberCounts() (alive, dead int) {
	alive = p.ml.NumMembers() // before deadMu: memberlist takes deadMu (event) under its own lock
	p.deadMu.Lock()
	defer p.deadMu.Unlock()
	for name, at := range p.dead {
		if time.Since(at) > deadFor {
			delete(p.dead, name)
		}
	}
	return alive, len(p.dead)
}

// FacadeMembers are the proxies of the cluster facade: the live members that gave a client address, this
// one included when it has one, less those whose client port refuses connections (links).
func (p *Peers) FacadeMembers() []FacadeMember {
	out := p.facadeCandidates()
	if p.links != nil {
		out = slices.DeleteFunc(out, func(m FacadeMember) bool { return !m.Self && p.links.isDown(m.Name) })
	}
	return out
}

// facadeCandidates are the live members that gave a client address.
func (p *Peers) facadeCandidates() []FacadeMember {
	var out []FacadeMember
	for _, n := range p.ml.Members() {
		meta := n.Meta
		if len(meta) < 2 || meta[0] != metaClient {
			continue
		}
		host, port, err := splitHostPort(string(meta[1:]))
		if err != nil {
			continue
		}
		out = append(out, FacadeMember{Name: n.Name, Host: host, Port: port, BusPort: int(n.Port),
			Self: n.Name == p.name})
	}
	return out
}
