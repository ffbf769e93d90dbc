package topology

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// links hold an idle connection to the client port of every other facade member. A proxy process that dies
// (crash, SIGKILL, OOM kill) has its sockets closed by the kernel, so the link ends at once, and a new dial
// is refused: the member is then left out of the facade, seconds before memberlist's failure detector
// finds it dead. A member whose link ends but who accepts a new one (it closed an idle connection) stays.
// A host that stops answering closes nothing; memberlist finds that one.
type links struct {
	p     *Peers
	every time.Duration // how often members without a link are dialled
	dial  time.Duration // dial timeout

	mu      sync.Mutex
	members map[string]string    // member → its client address, as of the last tick
	conns   map[string]net.Conn  // member → its open link
	down    map[string]time.Time // members whose client port refused the last dial, since when
}

func startLinks(p *Peers) *links {
	l := &links{p: p, every: time.Second, dial: 500 * time.Millisecond, members: map[string]string{},
		conns: map[string]net.Conn{}, down: map[string]time.Time{}}
	go l.run()
	return l
}

func (l *links) run() {
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		l.tick()
		select {
		case <-t.C:
		case <-l.p.done:
			l.mu.Lock()
			for _, c := range l.conns {
				_ = c.Close()
			}
			l.mu.Unlock()
			return
		}
	}
}

// tick dials the members without a link and forgets those that are members no more.
func (l *links) tick() {
	members := map[string]string{}
	for _, m := range l.p.facadeCandidates() {
		if !m.Self {
			members[m.Name] = net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
		}
	}
	l.mu.Lock()
	l.members = members
	for name, c := range l.conns {
		if _, ok := members[name]; !ok {
			_ = c.Close()
			delete(l.conns, name)
		}
	}
	for name := range l.down {
		if _, ok := members[name]; !ok {
			delete(l.down, name)
		}
	}
	var missing []string
	for name := range members {
		if l.conns[name] == nil {
			missing = append(missing, name)
		}
	}
	l.mu.Unlock()
	for _, name := range missing {
		go l.connect(name, members[name])
	}
}

// connect dials a member's client port and watches the link until it ends; then it dials again at once,
// so that a dead process is told from a closed connection within a dial.
func (l *links) connect(name, addr string) {
	for {
		select {
		case <-l.p.done:
			return
		default:
		}
		if !l.isMember(name, addr) {
			return
		}
		c, err := net.DialTimeout("tcp", addr, l.dial)
		l.mu.Lock()
		if err != nil {
			// Only a refusal says the process is gone; a timeout or an unreachable network says nothing
			// memberlist's probes would not say better.
			if _, was := l.down[name]; !was && errors.Is(err, syscall.ECONNREFUSED) {
				l.down[name] = time.Now()
				l.p.log.Info("peers: a peer's client port refuses connections; out of the cluster facade",
					"peer", name, "addr", addr, "err", err)
			}
			l.mu.Unlock()
			return
		}
		select {
		case <-l.p.done:
			l.mu.Unlock()
			_ = c.Close()
			return
		default:
		}
		if old := l.conns[name]; old != nil || l.members[name] != addr { // a tick raced this dial
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[name] = c
		delete(l.down, name)
		l.mu.Unlock()

		began := time.Now()
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
		_ = c.Close()
		l.mu.Lock()
		if l.conns[name] == c {
			delete(l.conns, name)
		}
		l.mu.Unlock()
		if time.Since(began) < l.every {
			return // a peer that closes links at once (max_clients): the next tick dials again
		}
	}
}

func (l *links) isMember(name, addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.members[name] == addr
}

// isDown tells whether a member's client port refused the last dial.
func (l *links) isDown(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.down[name]
	return ok
}
