package proxy

import (
	"os"
	"reflect"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Backpressure: a client that sends requests faster than it reads replies (or not at all) must hold bounded
// proxy memory and must not slow anyone else. Three measures, in order:
//
//  1. The session stops parsing when the replies waiting for the client (gnet's outbound buffer, finished
//     replies queued behind an unfinished one) pass pauseOutput, or when its requests in flight fill its
//     window: pauseOutput divided by the client's mean reply size, so a client of 60 KB values keeps about
//     pauseOutput in flight, not 4096 replies' worth. A new client's window starts from a guess of 64 KiB
//     replies, so its first burst cannot overshoot either.
//  2. While paused it stops reading the socket, so its requests wait in the kernel and in the client, not in
//     the proxy. gnet (v2.9) reads every readable connection and keeps what a callback leaves, with no way
//     to pause one connection (gnet issues #712, #722), so the session takes the connection's read interest
//     out of the loop's epoll set itself, as Redis removes a client's read handler. gnet re-arms reading
//     when it drains or fills a connection's outbound buffer; a paused session disarms it again the next
//     time it is called, so at most one read (readBufferCap) slips through each time.
//  3. The output limits (client_output_buffer_limit, Redis's semantics for normal clients) close a client
//     whose waiting replies pass the hard limit, or stay over the soft limit for soft_seconds. With 1 and
//     2 they are reached only by single replies larger than the limits.
const (
	pauseOutput = 8 << 20
	minWindow   = 64 // requests in flight a client always gets, whatever its reply sizes
	// firstReplyGuess is the mean reply size assumed before a client's replies tell: a new client starts with
	// pauseOutput/64 KiB = 128 requests in flight, and a client of small replies reaches the full window
	// after some fifty replies.
	firstReplyGuess = 64 << 10
)

// window is how many requests the client may have in flight.
func (s *session) window() int {
	return min(max(pauseOutput/max(int(s.avgReply), 1), minWindow), maxQueued)
}

// pendingOutput is what the client has not read yet: gnet's outbound buffer and the finished replies waiting
// in the queue or in out.
func (s *session) pendingOutput() int {
	return s.c.OutboundBuffered() + s.queued + s.outLen()
}

func (s *session) overLimits() bool {
	return s.queueLen() >= s.window() || s.pendingOutput() > pauseOutput
}

func (s *session) pause() {
	s.paused = true
	if !s.listed {
		s.listed = true
		s.l.paused = append(s.l.paused, s)
	}
	s.stopReading()
	s.l.armTick() // the tick retries it: a loop with no request alive would not set one
}

// tryResume resumes a paused session once its backlog has drained to half the pause marks, and reports
// whether it did. Called after the session's writes and on every tick.
func (s *session) tryResume() bool {
	if s.closed || s.closing {
		return true // nothing to resume; drop it from the paused list
	}
	if s.queueLen() >= s.window()/2 || s.pendingOutput() > pauseOutput/2 {
		s.stopReading() // gnet may have re-armed reading meanwhile
		return false
	}
	s.paused = false
	s.startReading()
	_ = s.c.Wake(nil) // parse what waits in the Inbox and in gnet
	return true
}

// checkOutputLimits closes the client past the output buffer limits, and reports whether it did.
func (s *session) checkOutputLimits() bool {
	lim := s.l.srv.live.outputLimit.Load()
	if s.ps != nil && s.subscribed() {
		lim = &pubsubOutputLimit
	}
	if lim.Hard == 0 && lim.Soft == 0 {
		return false
	}
	pending := s.pendingOutput()
	over := lim.Hard > 0 && pending > int(lim.Hard)
	if !over && lim.Soft > 0 && pending > int(lim.Soft) {
		now := time.Now().UnixNano()
		if s.softSince == 0 {
			s.softSince = now
		}
		over = now-s.softSince >= int64(lim.SoftSeconds.D())
	} else if !over {
		s.softSince = 0
	}
	if !over {
		return false
	}
	s.l.srv.stats.OutputLimitClosed.Add(1)
	s.l.srv.log.Warn("closing client that reached the output buffer limit", "client", s.raddr(), "bytes", pending,
		"hard", int64(lim.Hard), "soft", int64(lim.Soft), "soft_seconds", lim.SoftSeconds.D().String())
	s.closing = true
	if s.w != nil {
		s.w.out = s.w.out[:0]
	}
	_ = s.c.Close()
	return true
}

// pubsubOutputLimit is Redis's default client-output-buffer-limit for Pub/Sub clients: a subscriber that
// does not keep up with its messages is closed long before a normal client would be.
var pubsubOutputLimit = OutputLimit{Hard: 32 << 20, Soft: 8 << 20, SoftSeconds: Duration(60 * time.Second)}

// stopReading takes the client's read interest out of the loop's epoll set.
func (s *session) stopReading() {
	if s.l.epfd < 0 {
		return
	}
	if err := s.l.setInterest(s.c, false); err != nil {
		s.l.srv.log.Warn("cannot pause reading a client; paused clients are buffered instead", "err", err)
		s.l.epfd = -1
		return
	}
	s.readOff = true
}

func (s *session) startReading() {
	if !s.readOff || s.l.epfd < 0 {
		return
	}
	s.readOff = false
	if err := s.l.setInterest(s.c, true); err != nil {
		s.l.srv.log.Warn("cannot resume reading a client; closing it", "client", s.raddr(), "err", err)
		_ = s.c.Close()
	}
}

// setInterest sets which events the loop's epoll reports for c: reads if read, and writes while gnet has
// output waiting for c (gnet's own setting then). A client that is not read is still seen leaving (RDHUP):
// Redis frees a client at EOF, even a blocked one, and a blocked client's wait must end with it.
func (l *loop) setInterest(c gnet.Conn, read bool) error {
	ev := uint32(unix.EPOLLRDHUP)
	if read {
		ev = unix.EPOLLIN | unix.EPOLLPRI
	}
	if c.OutboundBuffered() > 0 {
		ev |= unix.EPOLLOUT
	}
	fd := c.Fd()
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: ev, Fd: int32(fd)})
}

// epollFD finds the epoll descriptor of a gnet event loop: the fd field of its poller, read by reflection
// since gnet does not export it. -1 if the layout is not the one this was written for (gnet v2.9); a wrong
// guess cannot do harm, because EPOLL_CTL_MOD of a client's fd fails on any descriptor that is not the
// epoll set watching it, and the first failure turns read pausing off for the loop.
func epollFD(el gnet.EventLoop) int {
	v := reflect.ValueOf(el)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return -1
	}
	p := v.Elem().FieldByName("poller")
	if p.Kind() != reflect.Pointer || p.IsNil() || p.Elem().Kind() != reflect.Struct {
		return -1
	}
	fd := p.Elem().FieldByName("fd")
	if fd.Kind() != reflect.Int {
		return -1
	}
	if !isEpoll(int(fd.Int())) {
		return -1
	}
	return int(fd.Int())
}

// isEpoll tells whether fd is an epoll descriptor.
func isEpoll(fd int) bool {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && link == "anon_inode:[eventpoll]"
}
