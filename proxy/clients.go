package proxy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// CLIENT LIST, INFO and KILL act on the proxy's own client sessions, on every event loop: the nodes' clients
// are the proxy's connections. Sessions of other proxies of a fleet are not listed.

func cmdClientInfo(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(s.appendText(nil, s.appendInfoLine(nil, s.l.now, "client|info")))
}

// clientFilter selects sessions as CLIENT LIST's and CLIENT KILL's filters do; the zero value takes all.
type clientFilter struct {
	ids         map[int64]bool // nil: any
	typ         string         // normal, pubsub, master, replica or slave (no proxy client is one); "": any
	addr, laddr string
	skipMe      bool
	me          *session
}

func (f *clientFilter) match(x *session) bool {
	switch {
	case x.killed, f.skipMe && x == f.me:
		return false
	case f.ids != nil && !f.ids[x.id]:
		return false
	case f.typ == "normal" && x.subscribed(), f.typ == "pubsub" && !x.subscribed():
		return false
	case f.typ == "master", f.typ == "replica", f.typ == "slave":
		return false
	case f.addr != "" && x.raddr() != f.addr, f.laddr != "" && x.localAddr() != f.laddr:
		return false
	}
	return true
}

// parseClientType takes TYPE's argument (the last one given counts); false for a type Redis does not know.
func (f *clientFilter) parseClientType(arg []byte) bool {
	switch t := strings.ToLower(string(arg)); t {
	case "normal", "pubsub", "master", "replica", "slave":
		f.typ = t
		return true
	}
	return false
}

func errUnknownClientType(arg []byte) []byte {
	return resp.AppendError(nil, "ERR Unknown client type '"+string(arg)+"'")
}

// cmdClientList is Redis's CLIENT LIST [TYPE type] [ID id ...], over every session of the proxy, by id.
func cmdClientList(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	var f clientFilter
	switch {
	case len(args) == 2:
	case len(args) == 4 && bytes.EqualFold(args[2], []byte("type")):
		if !f.parseClientType(args[3]) {
			s.local(errUnknownClientType(args[3]))
			return
		}
	case len(args) > 3 && bytes.EqualFold(args[2], []byte("id")):
		f.ids = make(map[int64]bool, len(args)-3)
		for _, a := range args[3:] {
			id, ok := resp.ParseDecimal(a)
			if !ok {
				s.local(resp.AppendError(nil, "ERR Invalid client ID"))
				return
			}
			f.ids[id] = true
		}
	default:
		s.local(errSyntax)
		return
	}
	acrossLoops(s, func(l *loop) map[int64][]byte {
		now := time.Now().UnixNano()
		out := map[int64][]byte{}
		for _, x := range l.sessions {
			if f.match(x) {
				cmd := x.lastCommand()
				if x == s {
					cmd = "client|list"
				}
				out[x.id] = x.appendInfoLine(nil, now, cmd)
			}
		}
		return out
	}, func(perLoop []map[int64][]byte) []byte {
		lines := map[int64][]byte{}
		for _, m := range perLoop {
			maps.Copy(lines, m)
		}
		// By id, or with ID in the order given, repeats included, as Redis lists them.
		var order []int64
		if f.ids == nil {
			order = slices.Sorted(maps.Keys(lines))
		} else {
			for _, a := range args[3:] {
				id, _ := resp.ParseDecimal(a)
				order = append(order, id)
			}
		}
		var text []byte
		for _, id := range order {
			text = append(text, lines[id]...)
		}
		return s.appendText(nil, text)
	})
}

// cmdClientKill is Redis's CLIENT KILL ip:port (+OK, or an error if no client has that address) and CLIENT
// KILL <filter> <value> ... with ID, TYPE, USER, ADDR, LADDR and SKIPME (the number of clients closed). A
// killed client is closed at once, its requests in flight dropped; the caller, if it matches, once answered.
func cmdClientKill(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	f := clientFilter{me: s}
	oldForm := len(args) == 3
	if oldForm {
		f.addr = string(args[2])
	} else {
		f.skipMe = true
		for i := 2; i < len(args); i += 2 {
			if i+1 >= len(args) {
				s.local(errSyntax)
				return
			}
			opt, val := strings.ToLower(string(args[i])), args[i+1]
			switch opt {
			case "id":
				id, ok := resp.ParseDecimal(val)
				if !ok || id <= 0 {
					s.local(resp.AppendError(nil, "ERR client-id should be greater than 0"))
					return
				}
				f.ids = map[int64]bool{id: true} // Redis keeps the last ID given
			case "type":
				if !f.parseClientType(val) {
					s.local(errUnknownClientType(val))
					return
				}
			case "user":
				if string(val) != "default" {
					s.local(resp.AppendError(nil, "ERR No such user '"+string(val)+"'"))
					return
				}
			case "addr":
				f.addr = string(val)
			case "laddr":
				f.laddr = string(val)
			case "skipme":
				switch strings.ToLower(string(val)) {
				case "yes":
					f.skipMe = true
				case "no":
					f.skipMe = false
				default:
					s.local(errSyntax)
					return
				}
			default:
				s.local(errSyntax)
				return
			}
		}
	}
	killsSelf, by := f.match(s), s.raddr()
	acrossLoops(s, func(l *loop) int {
		n := 0
		for _, x := range slices.Clone(l.sessions) {
			if !f.match(x) {
				continue
			}
			n++
			if x == s {
				continue // closed once its reply is out (below)
			}
			l.srv.log.Info("client killed", "client", x.raddr(), "id", x.id, "by", by)
			x.killed, x.closing = true, true
			_ = x.c.Close()
		}
		return n
	}, func(perLoop []int) []byte {
		n := 0
		for _, k := range perLoop {
			n += k
		}
		if killsSelf && !s.closed {
			s.killed, s.closing = true, true
		}
		switch {
		case !oldForm:
			return resp.AppendInt(nil, int64(n))
		case n == 0:
			return resp.AppendError(nil, "ERR No such client")
		}
		return resp.AppendOK(nil)
	})
}

// acrossLoops answers the session's command with what visit finds on every loop: visit runs on each loop's
// goroutine in turn, off the caller's loop; reply makes the answer from their results back on the caller's
// loop. The session's later commands wait for it, as behind any command Redis runs at once.
func acrossLoops[T any](s *session, visit func(l *loop) T, reply func([]T) []byte) {
	l := s.l
	r := l.newRequest(s)
	r.be.Raw = resp.AppendCommand(r.be.Raw[:0], s.work().curArgs...) // for SLOWLOG
	s.held = true
	s.work().queue.Push(r)
	go func() {
		results := onEachLoop(l.srv, visit)
		_ = l.el.Execute(context.Background(), runnable(func() {
			defer l.recoverPanic(s)
			l.now = time.Now().UnixNano()
			r.finish(reply(results))
			s.resumeAfterHeld()
			l.flush()
		}))
	}()
}

// lastCommand is the name of the session's last command, as CLIENT LIST's cmd shows it; NULL if unknown.
func (s *session) lastCommand() string {
	if s.curCmd < 0 {
		return "NULL"
	}
	return command.All()[s.curCmd].Name
}

// appendInfoLine is a session's CLIENT LIST line at now (unix ns), with cmd as its last command. Fields the
// proxy has no counterpart for are 0, as for a Redis client that holds nothing.
func (s *session) appendInfoLine(b []byte, now int64, cmd string) []byte {
	var flags []byte
	if s.subscribed() {
		flags = append(flags, 'P')
	}
	if s.tx != nil {
		flags = append(flags, 'x')
	}
	if s.blocked != nil {
		flags = append(flags, 'b')
	}
	if s.closing {
		flags = append(flags, 'c')
	}
	if len(flags) == 0 {
		flags = append(flags, 'N')
	}
	var sub, psub, ssub int
	if s.ps != nil {
		sub, psub, ssub = len(s.ps.channels), len(s.ps.patterns), len(s.ps.shard)
	}
	multi := -1
	if s.tx != nil {
		multi = s.tx.n
	}
	qbuf, obl := s.c.InboundBuffered(), s.outLen()
	if s.w != nil {
		qbuf += s.w.in.Len()
	}
	oll := 0 // finished replies waiting behind an unfinished one
	for i := range s.queueLen() {
		if s.w.queue.At(i).done {
			oll++
		}
	}
	omem := s.c.OutboundBuffered() + s.queued
	events := "r"
	switch {
	case s.readOff && s.c.OutboundBuffered() > 0:
		events = "w"
	case s.readOff:
		events = ""
	case s.c.OutboundBuffered() > 0:
		events = "rw"
	}
	proto := 2
	if s.resp3 {
		proto = 3
	}
	return fmt.Appendf(b, "id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=0 sub=%d psub=%d ssub=%d "+
		"multi=%d qbuf=%d qbuf-free=0 argv-mem=0 multi-mem=%d rbs=0 rbp=0 obl=%d oll=%d omem=%d tot-mem=%d "+
		"events=%s cmd=%s user=default redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
		s.id, s.raddr(), s.localAddr(), s.c.Fd(), s.named().name, (now-s.created)/1e9, (now-s.lastActive)/1e9,
		flags, sub, psub, ssub, multi, qbuf, s.txMem(), obl, oll, omem, qbuf+omem+obl+s.txMem(),
		events, cmd, proto, s.named().libName, s.named().libVer)
}

func (s *session) txMem() int {
	if s.tx == nil {
		return 0
	}
	return len(s.tx.queued)
}

// localAddr is the connection's own address (gnet reports the listener's, 0.0.0.0:7777 or a port 0), looked
// up on each call: only CLIENT INFO, LIST and KILL need it.
func (s *session) localAddr() string {
	if sa, err := unix.Getsockname(s.c.Fd()); err == nil {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
		case *unix.SockaddrInet6:
			return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
		}
	}
	if a := s.c.LocalAddr(); a != nil {
		return a.String()
	}
	return ""
}
