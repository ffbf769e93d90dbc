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

// cmdHello is Redis's HELLO [protover [AUTH user pass] [SETNAME name]]: 2 and 3 switch the session's
// protocol (switchProtocol), without a version it stays; the reply, in the protocol switched to, has the
// proxy's own values: this connection's id, a standalone master without modules.
func cmdHello(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	resp3 := s.resp3
	if len(args) >= 2 {
		ver, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			s.local(resp.AppendError(nil, "ERR Protocol version is not an integer or out of range"))
			return
		}
		if ver != 2 && ver != 3 {
			s.local(resp.AppendError(nil, "NOPROTO unsupported protocol version"))
			return
		}
		resp3 = ver == 3
	}
	var name []byte
	setName := false
	for j := 2; j < len(args); j++ {
		more := len(args) - 1 - j
		switch opt := args[j]; {
		case bytes.EqualFold(opt, []byte("auth")) && more >= 2:
			if !authOK(args[j+1]) {
				s.local(errWrongPass)
				return
			}
			j += 2
		case bytes.EqualFold(opt, []byte("setname")) && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			s.local(resp.AppendError(nil, "ERR Syntax error in HELLO option '"+string(opt)+"'"))
			return
		}
	}
	if setName {
		if !validClientName(name) {
			s.local(errBadClientName)
			return
		}
		s.name = string(name)
	}
	s.switchProtocol(resp3, s.helloReply)
}

// helloReply is HELLO's map, in the session's protocol.
func (s *session) helloReply() []byte {
	proto := int64(2)
	if s.resp3 {
		proto = 3
	}
	b := s.appendMapHeader(nil, 7)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, redisVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, proto)
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, s.id)
	b = resp.AppendBulkString(b, "mode")
	if s.l.srv.facadeOn() {
		b = resp.AppendBulkString(b, "cluster")
	} else {
		b = resp.AppendBulkString(b, "standalone")
	}
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	return resp.AppendArrayHeader(b, 0)
}

var errWrongPass = resp.AppendError(nil, "WRONGPASS invalid username-password pair or user is disabled.")

// authOK mirrors a Redis whose default user has no password: only "default" exists and takes any password.
func authOK(user []byte) bool { return string(user) == "default" }

func cmdAuth(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	switch {
	case len(args) == 2:
		s.local(resp.AppendError(nil, "ERR AUTH <password> called without any password configured for the "+
			"default user. Are you sure your configuration is correct?"))
	case len(args) == 3 && authOK(args[1]):
		s.local(resp.AppendOK(nil))
	case len(args) == 3:
		s.local(errWrongPass)
	default:
		s.local(errSyntax)
	}
}

func cmdReset(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.name, s.libName, s.libVer = "", "", ""
	s.replyOff, s.skipNext, s.silentNow = false, false, false
	if s.ps != nil {
		s.ps.closeAll()
	}
	s.tx = nil
	s.unwatch()
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
	s.name = string(args[2])
	s.local(resp.AppendOK(nil))
}

func cmdClientGetname(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	if s.name == "" {
		s.local(s.appendNullBulk(nil))
		return
	}
	s.local(resp.AppendBulkString(nil, s.name))
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
		s.libName = string(val)
	case bytes.EqualFold(attr, []byte("lib-ver")):
		s.libVer = string(val)
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
