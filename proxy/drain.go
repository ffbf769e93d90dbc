package proxy

import (
	"context"
	"time"
)

// Draining (Shutdown): new clients are turned away with an error, /readyz says so, and each client is
// closed once it waits for no reply and has nothing unread, so that no request a client sent before the
// signal is left unanswered. Requests a client sends while draining are served too, until it is quiet.

var errShuttingDown = []byte("-ERR the proxy is shutting down\r\n")

// Shutdown drains the proxy and stops it: it returns when every client is gone, or when ctx ends (then the
// clients still connected are closed), and the engine has stopped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.closeTLS() // new TLS clients are closed before their handshake (gnet keeps its listeners open)
	for _, l := range s.loopList() {
		l.wakeNow()
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
wait:
	for s.stats.Clients.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			s.log.Warn("drain timeout: closing the clients still connected", "clients", s.stats.Clients.Load())
			break wait
		}
	}
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Stop(stop)
}

// closeQuiet closes the loop's clients that wait for no reply, have nothing unread and nothing unwritten.
func (l *loop) closeQuiet() {
	for _, s := range l.sessions {
		if !s.closing && !s.paused && s.queueLen() == 0 && s.outLen() == 0 && s.c.InboundBuffered() == 0 &&
			s.c.OutboundBuffered() == 0 {
			s.closing = true
			_ = s.c.Close()
		}
	}
}
