package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// Readiness (/readyz): the proxy should get clients only while it can serve every slot, so each master of
// the current map must answer PING. The probe runs at most once a second, however often /readyz is asked.

const (
	readyEvery   = time.Second
	readyTimeout = 500 * time.Millisecond
)

type readiness struct {
	mu      sync.Mutex
	checked time.Time
	version uint64 // of the map last checked
	err     error
}

// NotReady says why the proxy should get no new clients now, or nil when it should.
func (s *Server) NotReady() error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	snap := s.topo.Snapshot()
	if snap == nil {
		return errors.New("no slot map yet")
	}
	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < readyEvery && r.version == snap.Version {
		return r.err
	}
	masters := snap.MasterAddrs()
	errs := make([]error, len(masters))
	var wg sync.WaitGroup
	for i, addr := range masters {
		wg.Go(func() { errs[i] = s.pingNode(addr) })
	}
	wg.Wait()
	var down []string
	for i, err := range errs {
		if err != nil {
			down = append(down, masters[i]+" ("+err.Error()+")")
		}
	}
	r.err = nil
	if len(down) > 0 {
		r.err = fmt.Errorf("%d of %d masters do not answer: %s", len(down), len(masters), strings.Join(down, ", "))
	}
	r.checked, r.version = time.Now(), snap.Version
	return r.err
}

// pingNode asks a node for PING (after AUTH when the proxy has a password) on a connection of its own.
func (s *Server) pingNode(addr string) error {
	var c net.Conn
	var err error
	if conf := s.bcfg.Load().TLS; conf != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: readyTimeout}, "tcp", addr, topology.ForAddr(conf, addr))
	} else {
		c, err = net.DialTimeout("tcp", addr, readyTimeout)
	}
	if err != nil {
		var sys *os.SyscallError // "connection refused", without the addresses /readyz names already
		if errors.As(err, &sys) {
			err = sys.Err
		}
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(readyTimeout))
	var req []byte
	n := 1
	if s.cfg.Password != "" {
		n++
		if s.cfg.Username != "" {
			req = resp.AppendCommandStrings(req, "AUTH", s.cfg.Username, s.cfg.Password)
		} else {
			req = resp.AppendCommandStrings(req, "AUTH", s.cfg.Password)
		}
	}
	if _, err := c.Write(resp.AppendCommandStrings(req, "PING")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	var line string
	for range n {
		if line, err = r.ReadString('\n'); err != nil {
			return err
		}
	}
	if line = strings.TrimRight(line, "\r\n"); line != "+PONG" {
		return errors.New(line)
	}
	return nil
}
