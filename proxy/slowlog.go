package proxy

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// SLOWLOG of the proxy: the commands whose client-seen latency (cmdstats.go) reached
// slowlog-log-slower-than microseconds, newest first, at most slowlog-max-len, in Redis's entry format.
// Blocking commands are left out, as Redis leaves out their time blocked. Only a slow command takes the
// lock; the others read one atomic.

const (
	slowlogMaxArgs  = 32  // Redis's SLOWLOG_ENTRY_MAX_ARGC
	slowlogMaxBytes = 128 // Redis's SLOWLOG_ENTRY_MAX_STRING
)

type slowEntry struct {
	id, at, usec int64
	args         [][]byte
	addr, name   string
}

type slowlog struct {
	mu      sync.Mutex
	nextID  int64
	entries []slowEntry // newest first
}

// slow tells whether a command that took d ns goes to the slowlog.
func (l *loop) slow(cmd int, d int64) bool {
	thr := l.srv.live.slowlogSlower.Load()
	return thr >= 0 && d/1000 >= thr && cmd >= 0 && !command.All()[cmd].Has(command.Blocking)
}

// logSlow adds an entry for args, which it copies and trims as Redis does.
func (s *session) logSlow(args [][]byte, d int64) {
	e := slowEntry{at: time.Now().Unix(), usec: d / 1000, addr: s.raddr, name: s.name}
	n := min(len(args), slowlogMaxArgs)
	for i := range n {
		a := args[i]
		switch {
		case i == slowlogMaxArgs-1 && len(args) > slowlogMaxArgs:
			a = fmt.Appendf(nil, "... (%d more arguments)", len(args)-slowlogMaxArgs+1)
		case len(a) > slowlogMaxBytes:
			a = fmt.Appendf(append([]byte(nil), a[:slowlogMaxBytes]...), "... (%d more bytes)", len(a)-slowlogMaxBytes)
		default:
			a = append([]byte(nil), a...)
		}
		e.args = append(e.args, a)
	}
	sl := &s.l.srv.slowlog
	limit := int(s.l.srv.live.slowlogMaxLen.Load())
	sl.mu.Lock()
	defer sl.mu.Unlock()
	e.id = sl.nextID
	sl.nextID++
	sl.entries = append([]slowEntry{e}, sl.entries[:min(len(sl.entries), limit)]...)
	sl.entries = sl.entries[:min(len(sl.entries), limit)]
}

// logSlowRequest logs a forwarded request: its arguments are read back from what was sent.
func (r *request) logSlowRequest(d int64) {
	var args [][]byte
	if raw := r.be.Raw; len(raw) > 0 {
		var p resp.CommandParser
		args, _, _ = p.Parse(raw)
	} else if len(r.children) > 0 { // split over nodes: the command once, then every part's arguments
		for i, c := range r.children {
			var p resp.CommandParser
			a, _, _ := p.Parse(c.be.Raw)
			if i > 0 && len(a) > 0 {
				a = a[1:]
			}
			args = append(args, a...)
		}
	}
	r.sess.logSlow(args, d)
}

func cmdSlowlogGet(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	count := int64(10)
	if len(args) > 2 {
		n, err := strconv.ParseInt(string(args[2]), 10, 64)
		if err != nil || n < -1 {
			s.local(resp.AppendError(nil, "ERR count should be greater than or equal to -1"))
			return
		}
		count = n
	}
	sl := &s.l.srv.slowlog
	sl.mu.Lock()
	entries := sl.entries
	if count >= 0 && int(count) < len(entries) {
		entries = entries[:count]
	}
	b := resp.AppendArrayHeader(nil, len(entries))
	for _, e := range entries {
		b = resp.AppendArrayHeader(b, 6)
		b = resp.AppendInt(b, e.id)
		b = resp.AppendInt(b, e.at)
		b = resp.AppendInt(b, e.usec)
		b = resp.AppendArrayHeader(b, len(e.args))
		for _, a := range e.args {
			b = resp.AppendBulk(b, a)
		}
		b = resp.AppendBulkString(b, e.addr)
		b = resp.AppendBulkString(b, e.name)
	}
	sl.mu.Unlock()
	s.local(b)
}

func cmdSlowlogLen(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	sl := &s.l.srv.slowlog
	sl.mu.Lock()
	n := len(sl.entries)
	sl.mu.Unlock()
	s.local(resp.AppendInt(nil, int64(n)))
}

func cmdSlowlogReset(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	sl := &s.l.srv.slowlog
	sl.mu.Lock()
	sl.entries = nil
	sl.mu.Unlock()
	s.local(resp.AppendOK(nil))
}
