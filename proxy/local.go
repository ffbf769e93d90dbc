package proxy

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// redisVersion is what HELLO reports: the Redis version the command table was generated from.
const redisVersion = command.RedisVersion

func cmdOK(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendOK(nil))
}

func cmdPing(s *session, cmd *command.Command, args [][]byte, _ []byte, _ int64) {
	if len(args) <= 2 && s.subscribed() && !s.resp3 {
		s.local(pingSubscribed(args))
		return
	}
	switch len(args) {
	case 1:
		s.local(replyPong)
	case 2:
		s.local(resp.AppendBulk(nil, args[1]))
	default:
		s.local(resp.AppendError(nil, command.ArityError(cmd)))
	}
}

var replyPong = []byte("+PONG\r\n")

func cmdEcho(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendBulk(nil, args[1]))
}

func cmdQuit(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendOK(nil))
	s.closing = true
}

func cmdSelect(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	db, err := strconv.ParseInt(string(args[1]), 10, 64)
	switch {
	case err != nil:
		s.local(errNotInteger)
	case db != 0:
		s.local(resp.AppendError(nil, "ERR SELECT is not allowed in cluster mode"))
	default:
		s.local(resp.AppendOK(nil))
	}
}

func cmdReset(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.names = nil
	s.replyOff, s.skipNext, s.silentNow = false, false, false
	if s.ps != nil {
		s.ps.closeAll()
	}
	s.tx = nil
	s.unwatch()
	s.initAuth()                                                 // back to the default user, authenticated if it takes no password, as in Redis
	s.switchProtocol(false, func() []byte { return replyReset }) // RESET goes back to RESP2, as in Redis
}

var replyReset = []byte("+RESET\r\n")

var errBadClientName = resp.AppendError(nil, "ERR Client names cannot contain spaces, newlines or special characters.")

// validClientName follows Redis: printable ASCII without spaces.
func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

func cmdClientSetname(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	if !validClientName(args[2]) {
		s.local(errBadClientName)
		return
	}
	s.naming().name = string(args[2])
	s.local(resp.AppendOK(nil))
}

func cmdClientGetname(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	name := s.named().name
	if name == "" {
		s.local(s.appendNullBulk(nil))
		return
	}
	s.local(resp.AppendBulkString(nil, name))
}

func cmdClientID(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendInt(nil, s.id))
}

var errSyntax = resp.AppendError(nil, "ERR syntax error")

// cmdClientReply is Redis's CLIENT REPLY: OFF and SKIP are not answered, ON is.
func cmdClientReply(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	switch {
	case bytes.EqualFold(args[2], []byte("on")):
		s.replyOff, s.silentNow = false, false
		s.local(resp.AppendOK(nil))
	case bytes.EqualFold(args[2], []byte("off")):
		s.replyOff, s.silentNow = true, true
	case bytes.EqualFold(args[2], []byte("skip")):
		if !s.replyOff {
			s.skipNext, s.silentNow = true, true
		}
	default:
		s.local(errSyntax)
	}
}

// The proxy keeps no client-side caching state: a client is never in tracking mode.
func cmdClientGetredir(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendInt(nil, -1))
}

func cmdClientTrackinginfo(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	b := s.appendMapHeader(nil, 3)
	b = resp.AppendBulkString(b, "flags")
	b = s.appendSetHeader(b, 1)
	b = resp.AppendBulkString(b, "off")
	b = resp.AppendBulkString(b, "redirect")
	b = resp.AppendInt(b, -1)
	b = resp.AppendBulkString(b, "prefixes")
	b = resp.AppendArrayHeader(b, 0)
	s.local(b)
}

func cmdClientNoEvict(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	if !bytes.EqualFold(args[2], []byte("on")) && !bytes.EqualFold(args[2], []byte("off")) {
		s.local(errSyntax)
		return
	}
	s.local(resp.AppendOK(nil))
}

// CLIENT SETINFO arrived in Redis 7.2; clients send it on connect, so the proxy takes it whatever the
// backend version.
func isClientSetinfo(args [][]byte) bool {
	return len(args) >= 2 && bytes.EqualFold(args[0], []byte("client")) && bytes.EqualFold(args[1], []byte("setinfo"))
}

func cmdClientSetinfo(s *session, args [][]byte) {
	if len(args) != 4 {
		s.local(resp.AppendError(nil, "ERR wrong number of arguments for 'client|setinfo' command"))
		return
	}
	attr, val := args[2], args[3]
	for _, c := range val {
		if c < '!' || c > '~' {
			s.local(resp.AppendError(nil, "ERR "+string(attr)+" cannot contain spaces, newlines or special characters."))
			return
		}
	}
	switch {
	case bytes.EqualFold(attr, []byte("lib-name")):
		s.naming().libName = string(val)
	case bytes.EqualFold(attr, []byte("lib-ver")):
		s.naming().libVer = string(val)
	default:
		s.local(resp.AppendError(nil, "ERR Unrecognized option '"+string(attr)+"'"))
		return
	}
	s.local(resp.AppendOK(nil))
}

// appendInfoSection adds "# Proxy" to an INFO text.
func (s *Server) appendInfoSection(b []byte) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > 0 {
		b = append(b, "\r\n\r\n"...)
	}
	st := &s.stats
	b = fmt.Appendf(b, "# Proxy\r\nproxy_version:%s\r\nproxy_go_version:%s\r\nproxy_uptime_in_seconds:%d\r\n"+
		"proxy_event_loops:%d\r\nproxy_connected_clients:%d\r\nproxy_total_connections_received:%d\r\n"+
		"proxy_rejected_connections:%d\r\nproxy_total_commands_processed:%d\r\n",
		Version, runtime.Version(), int64(time.Since(s.start).Seconds()), s.numLoops(),
		st.Clients.Load(), st.ClientsTotal.Load(), st.ClientsRejected.Load(), s.totalCommands())
	b = append(b, s.reloadInfo()...)
	if snap := s.topo.Snapshot(); snap != nil {
		b = fmt.Appendf(b, "proxy_cluster_nodes:%d\r\nproxy_cluster_shards:%d\r\nproxy_slot_map_version:%d\r\n",
			len(snap.Nodes), len(snap.Shards), snap.Version)
	}
	if p := s.peers.Load(); p != nil {
		ps := p.Stats()
		alive, dead := p.MemberCounts()
		b = fmt.Appendf(b, "proxy_peers_name:%s\r\nproxy_peers_addr:%s\r\nproxy_peers_members:%d\r\n"+
			"proxy_peers_alive:%d\r\nproxy_peers_dead:%d\r\nproxy_peers_poller:%s\r\n"+
			"proxy_peers_hints_sent:%d\r\nproxy_peers_hints_received:%d\r\nproxy_peers_hint_refreshes:%d\r\n",
			p.Name(), p.Addr(), p.Members(), alive, dead, p.Poller(), ps.HintsSent.Load(),
			ps.HintsReceived.Load(), ps.HintRefreshes.Load())
		if m, ok := s.topo.(*topology.Manager); ok {
			b = fmt.Appendf(b, "proxy_topology_polls_skipped:%d\r\n", m.Stats().Skipped)
		}
	}
	return b
}

// loopList is the loops made so far: a copy, to use without loopsMu.
func (s *Server) loopList() []*loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	loops := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		loops = append(loops, l)
	}
	return loops
}

func (s *Server) numLoops() int {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	return len(s.loops)
}
