package proxy

import (
	"bytes"
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

// logSlow adds an entry for args (of total arguments in all), which it copies and trims as Redis does.
func (s *session) logSlow(args [][]byte, total int, d int64) {
	e := slowEntry{at: time.Now().Unix(), usec: d / 1000, addr: s.raddr(), name: s.named().name}
	n := min(len(args), slowlogMaxArgs)
	for i := range n {
		a := args[i]
		switch {
		case i == slowlogMaxArgs-1 && total > slowlogMaxArgs:
			a = fmt.Appendf(nil, "... (%d more arguments)", total-slowlogMaxArgs+1)
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

// logSlowRequest logs a forwarded request: its first arguments are read back from what was sent, without
// copying the others (a DEL of a million keys is one entry of 32 arguments).
func (r *request) logSlowRequest(d int64) {
	args := make([][]byte, 0, slowlogMaxArgs)
	if len(r.be.Raw) > 0 || len(r.children) == 0 {
		args, total := firstArgs(args, r.be.Raw, 0, slowlogMaxArgs)
		r.sess.logSlow(args, total, d)
		return
	}
	// Split over nodes: the command once, then every part's arguments.
	total := 0
	for i, c := range r.children {
		skip := 1 // the command's name, but in the first part
		if i == 0 {
			skip = 0
		}
		var n int
		args, n = firstArgs(args, c.be.Raw, skip, slowlogMaxArgs-len(args))
		total += max(n-skip, 0)
	}
	r.sess.logSlow(args, total, d)
}

// firstArgs appends to dst the arguments of a multibulk request after the first skip, at most limit of
// them, as slices of raw, and returns how many arguments the request has in all.
func firstArgs(dst [][]byte, raw []byte, skip, limit int) ([][]byte, int) {
	if len(raw) == 0 || raw[0] != '*' {
		return dst, 0
	}
	i := bytes.Index(raw, []byte("\r\n"))
	if i < 1 {
		return dst, 0
	}
	total, ok := resp.ParseDecimal(raw[1:i])
	if !ok {
		return dst, 0
	}
	raw = raw[i+2:]
	for k := range min(int(total), skip+limit) {
		j := bytes.Index(raw, []byte("\r\n"))
		if j < 1 || raw[0] != '$' {
			break
		}
		n, ok := resp.ParseDecimal(raw[1:j])
		if !ok || n < 0 || int64(len(raw)) < int64(j)+2+n+2 {
			break
		}
		if k >= skip {
			dst = append(dst, raw[j+2:j+2+int(n)])
		}
		raw = raw[j+2+int(n)+2:]
	}
	return dst, int(total)
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
