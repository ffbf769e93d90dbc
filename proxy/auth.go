package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// Client authentication and authorization, as Redis 7.0 does them (server.c processCommand, acl.c): every
// session runs as a user of the proxy's own (proxy/acl, from proxy.yaml), authenticated at once when the
// default user takes no password. The cluster's own users are not involved: the proxy's connections to the
// nodes authenticate with its username/password.
//
// The fast path pays one bool: a session is gated only while it is unauthenticated or its user is restricted.

var (
	errNoAuth       = resp.AppendError(nil, "NOAUTH Authentication required.")
	errWrongPass    = resp.AppendError(nil, "WRONGPASS invalid username-password pair or user is disabled.")
	errAuthNoPass   = resp.AppendError(nil, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	errHelloNoAuth  = resp.AppendError(nil, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	errACLReadOnly  = "is not supported by the proxy: its users are configured in proxy.yaml (users, aclfile, requirepass) and reloaded on SIGHUP"
	protectedDenied = []byte("-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n")
)

// initAuth makes the session the default user's, authenticated if that user is on and takes no password
// (Redis's clientSetDefaultAuth).
func (s *session) initAuth() {
	def := s.l.srv.users.Load().Default()
	s.user = def
	s.authed = def.Enabled() && def.NoPass()
	s.updateGate()
}

func (s *session) updateGate() {
	s.gated = !s.authed || !s.user.Unrestricted()
	if s.w != nil {
		s.w.parser.Unauthenticated = !s.authed
	}
}

// refused checks a command that exists and fits its arity before it runs or is queued, as processCommand
// does: NOAUTH for a client that must authenticate (only no_auth commands pass), then the user's
// permissions. It answers and returns true when the command may not run.
func (s *session) refused(cmd *command.Command, args [][]byte) bool {
	if !s.authed {
		if cmd.Has(command.NoAuth) {
			return false
		}
		s.l.srv.stats.NoAuth.Add(1)
		s.local(errNoAuth)
		return true
	}
	d, pos := s.user.Check(cmd, args)
	if d == acl.Allowed {
		if runsCommands[cmd.Index] { // only a user allowed everything gets here unchecked (updateGate)
			s.local(errScriptRestricted)
			return true
		}
		return false
	}
	object := cmd.Name
	if d != acl.DenyCommand && pos < len(args) {
		object = string(args[pos])
	}
	s.l.srv.stats.Denied[d].Add(1)
	s.l.srv.aclLog.add(s, denialReason[d], s.tx != nil, object, s.user.Name())
	s.local(resp.AppendError(nil, d.Error(cmd)))
	return true
}

// runsCommands are the commands that run other commands on a node: Redis checks those against the caller's
// permissions as they run; the proxy cannot see them, so a restricted user may not run these at all.
var runsCommands = func() []bool {
	run := make([]bool, command.Count())
	for _, c := range command.All() {
		switch c.Name {
		case "eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro":
			run[c.Index] = true
		}
	}
	return run
}()

var errScriptRestricted = resp.AppendError(nil, "NOPERM scripts and functions run commands the proxy cannot check "+
	"against this user's permissions: they need a user allowed every command, key and channel")

var denialReason = [...]string{acl.DenyCommand: "command", acl.DenyKey: "key", acl.DenyChannel: "channel"}

// authenticate makes the session name's if password opens it (Redis's ACLAuthenticateUser); a failure is
// counted, logged at most once a second, and in ACL LOG.
func (s *session) authenticate(name, password []byte, via string) bool {
	u := s.l.srv.users.Load().Get(string(name))
	if u == nil || !u.Authenticate(password) {
		srv := s.l.srv
		srv.stats.AuthFailures.Add(1)
		srv.aclLog.add(s, "auth", s.tx != nil, via, string(name))
		if now := time.Now().UnixNano(); now-srv.authLogAt.Load() >= int64(time.Second) {
			srv.authLogAt.Store(now)
			srv.log.Warn("client authentication failed", "client", s.raddr(), "user", string(name),
				"failures_so_far", srv.stats.AuthFailures.Load())
		}
		return false
	}
	s.user, s.authed = u, true
	s.updateGate()
	return true
}

func cmdAuth(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	var name, password []byte
	switch len(args) {
	case 2:
		if s.l.srv.users.Load().Default().NoPass() {
			s.local(errAuthNoPass)
			return
		}
		name, password = []byte("default"), args[1]
	case 3:
		name, password = args[1], args[2]
	default:
		s.local(errSyntax)
		return
	}
	if s.authenticate(name, password, string(args[0])) {
		s.local(resp.AppendOK(nil))
	} else {
		s.local(errWrongPass)
	}
}

// cmdHello is Redis's HELLO [protover [AUTH user pass] [SETNAME name]]: 2 and 3 switch the session's
// protocol (switchProtocol), without a version it stays; AUTH authenticates as AUTH does, and a client not
// authenticated by then is refused. The reply, in the protocol switched to, has the proxy's own values.
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
	for j := 2; j < len(args); j++ {
		more := len(args) - 1 - j
		switch opt := args[j]; {
		case bytes.EqualFold(opt, []byte("auth")) && more >= 2:
			if !s.authenticate(args[j+1], args[j+2], string(args[0])) {
				s.local(errWrongPass)
				return
			}
			j += 2
		case bytes.EqualFold(opt, []byte("setname")) && more >= 1:
			if !validClientName(args[j+1]) {
				s.local(errBadClientName)
				return
			}
			s.naming().name = string(args[j+1])
			j++
		default:
			s.local(resp.AppendError(nil, "ERR Syntax error in HELLO option '"+string(opt)+"'"))
			return
		}
	}
	if !s.authed {
		s.local(errHelloNoAuth)
		return
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

// The ACL subcommands: a read-only view of the proxy's users; changes are made in proxy.yaml.

func cmdACLWhoami(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendBulkString(nil, s.user.Name()))
}

func cmdACLUsers(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	names := s.l.srv.users.Load().Names()
	b := resp.AppendArrayHeader(nil, len(names))
	for _, n := range names {
		b = resp.AppendBulkString(b, n)
	}
	s.local(b)
}

func cmdACLList(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) {
	users := s.l.srv.users.Load()
	names := users.Names()
	b := resp.AppendArrayHeader(nil, len(names))
	for _, n := range names {
		b = resp.AppendBulkString(b, users.Get(n).Describe())
	}
	s.local(b)
}

func cmdACLGetuser(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	u := s.l.srv.users.Load().Get(string(args[2]))
	if u == nil {
		s.local(s.appendNullBulk(nil))
		return
	}
	info := u.Info()
	b := s.appendMapHeader(nil, 6)
	b = resp.AppendBulkString(b, "flags")
	b = s.appendSetHeader(b, len(info.Flags))
	for _, f := range info.Flags {
		b = resp.AppendBulkString(b, f)
	}
	b = resp.AppendBulkString(b, "passwords")
	b = resp.AppendArrayHeader(b, len(info.Passwords))
	for _, p := range info.Passwords {
		b = resp.AppendBulkString(b, p)
	}
	b = appendSelector(b, acl.SelectorInfo{Commands: info.Commands, Keys: info.Keys, Channels: info.Channels})
	b = resp.AppendBulkString(b, "selectors")
	b = resp.AppendArrayHeader(b, len(info.Selectors))
	for _, sel := range info.Selectors {
		b = appendSelector(s.appendMapHeader(b, 3), sel)
	}
	s.local(b)
}

func appendSelector(b []byte, sel acl.SelectorInfo) []byte {
	b = resp.AppendBulkString(b, "commands")
	b = resp.AppendBulkString(b, sel.Commands)
	b = resp.AppendBulkString(b, "keys")
	b = resp.AppendBulkString(b, sel.Keys)
	b = resp.AppendBulkString(b, "channels")
	return resp.AppendBulkString(b, sel.Channels)
}

func cmdACLCat(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	var names []string
	switch len(args) {
	case 2:
		names = acl.Categories()
	case 3:
		var ok bool
		if names, ok = acl.CommandsIn(string(args[2])); !ok {
			cat := args[2]
			if len(cat) > 128 {
				cat = cat[:128]
			}
			s.local(resp.AppendError(nil, "ERR Unknown category '"+string(cat)+"'"))
			return
		}
	default:
		s.local(errACLSubcommandSyntax(args))
		return
	}
	b := resp.AppendArrayHeader(nil, len(names))
	for _, n := range names {
		b = resp.AppendBulkString(b, n)
	}
	s.local(b)
}

// errACLSubcommandSyntax is Redis's addReplySubcommandSyntaxError for ACL.
func errACLSubcommandSyntax(args [][]byte) []byte {
	sub := args[1]
	if len(sub) > 128 {
		sub = sub[:128]
	}
	return resp.AppendError(nil, "ERR unknown subcommand or wrong number of arguments for '"+string(sub)+
		"'. Try ACL HELP.")
}

func cmdACLGenpass(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	bits := int64(256)
	switch len(args) {
	case 2:
	case 3:
		n, ok := resp.ParseDecimal(args[2])
		if !ok {
			s.local(errNotInteger)
			return
		}
		bits = n
	default:
		s.local(errACLSubcommandSyntax(args))
		return
	}
	if bits <= 0 || bits > 4096 {
		s.local(resp.AppendError(nil, "ERR ACL GENPASS argument must be the number of bits for the output "+
			"password, a positive number up to 4096"))
		return
	}
	raw := make([]byte, (bits+7)/8+1)
	_, _ = rand.Read(raw)
	s.local(resp.AppendBulkString(nil, hex.EncodeToString(raw)[:(bits+3)/4]))
}

func cmdACLDryrun(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	u := s.l.srv.users.Load().Get(string(args[2]))
	if u == nil {
		s.local(resp.AppendError(nil, "ERR User '"+string(args[2])+"' not found"))
		return
	}
	run := args[3:]
	cmd, st := command.Lookup(run)
	switch st {
	case command.Unknown, command.UnknownSubcommand:
		s.local(resp.AppendError(nil, "ERR Command '"+string(run[0])+"' not found"))
		return
	case command.WrongArity:
		s.local(resp.AppendError(nil, "ERR wrong number of arguments for '"+cmd.Name+"' command"))
		return
	}
	if d, pos := u.Check(cmd, run); d != acl.Allowed {
		s.local(resp.AppendBulkString(nil, d.DryRunError(u, cmd, run, pos)))
		return
	}
	s.local(resp.AppendOK(nil))
}

func cmdACLLog(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	count := int64(10)
	switch len(args) {
	case 2:
	case 3:
		if bytes.EqualFold(args[2], []byte("reset")) {
			s.l.srv.aclLog.reset()
			s.local(resp.AppendOK(nil))
			return
		}
		n, ok := resp.ParseDecimal(args[2])
		if !ok {
			s.local(errNotInteger)
			return
		}
		count = max(n, 0)
	default:
		s.local(errACLSubcommandSyntax(args))
		return
	}
	s.local(s.l.srv.aclLog.appendEntries(s, nil, int(min(count, 1<<20))))
}

func refuseACLChange(s *session, cmd *command.Command, _ [][]byte, _ []byte, _ int64) {
	s.local(resp.AppendError(nil, "ERR "+strings.ToUpper(strings.ReplaceAll(cmd.Name, "|", " "))+" "+errACLReadOnly))
}

// aclLog is Redis's ACL LOG: the latest denials and failed authentications, similar ones grouped (the same
// reason, context, object and user within 60 s, among the 10 newest), at most aclLogMax.
type aclLog struct {
	mu      sync.Mutex
	entries []*aclLogEntry // newest first
}

type aclLogEntry struct {
	count                         int64
	reason, context, object, user string
	at, infoAt                    time.Time // last seen; clientInfo made
	clientInfo                    string
}

const aclLogMax = 128

func (g *aclLog) add(s *session, reason string, inMulti bool, object, user string) {
	ctx := "toplevel"
	if inMulti {
		ctx = "multi"
	}
	now := time.Now()
	info := func() string { return string(s.appendInfoLine(nil, now.UnixNano(), s.lastCommand())) }
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, e := range g.entries[:min(len(g.entries), 10)] {
		if e.reason == reason && e.context == ctx && e.object == object && e.user == user &&
			now.Sub(e.at).Abs() <= time.Minute {
			e.count++
			// The client's description is redone at most every 100 ms: a flood of failed AUTHs on one
			// connection costs a count, not a CLIENT LIST line each.
			if now.Sub(e.infoAt) >= 100*time.Millisecond {
				e.clientInfo, e.infoAt = info(), now
			}
			e.at = now
			copy(g.entries[1:i+1], g.entries[:i])
			g.entries[0] = e
			return
		}
	}
	e := &aclLogEntry{count: 1, reason: reason, context: ctx, object: object, user: user, at: now,
		clientInfo: info(), infoAt: now}
	if len(g.entries) < aclLogMax {
		g.entries = append(g.entries, nil)
	}
	copy(g.entries[1:], g.entries)
	g.entries[0] = e
}

func (g *aclLog) reset() {
	g.mu.Lock()
	g.entries = nil
	g.mu.Unlock()
}

func (g *aclLog) appendEntries(s *session, b []byte, count int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	count = min(count, len(g.entries))
	b = resp.AppendArrayHeader(b, count)
	now := time.Now()
	for _, e := range g.entries[:count] {
		b = s.appendMapHeader(b, 7)
		b = resp.AppendBulkString(b, "count")
		b = resp.AppendInt(b, e.count)
		for _, kv := range [][2]string{{"reason", e.reason}, {"context", e.context}, {"object", e.object},
			{"username", e.user}} {
			b = resp.AppendBulkString(b, kv[0])
			b = resp.AppendBulkString(b, kv[1])
		}
		b = resp.AppendBulkString(b, "age-seconds")
		b = s.appendDouble(b, float64(now.Sub(e.at).Milliseconds())/1000)
		b = resp.AppendBulkString(b, "client-info")
		b = resp.AppendBulkString(b, e.clientInfo)
	}
	return b
}

// protectedFrom tells whether a client at addr is refused by protected mode: on, the proxy listening on an
// address other clients than this host's can reach, the default user without a password, and the client
// not at 127.0.0.1 or ::1 (Redis's islocalClient).
func (s *Server) protectedFrom(addr net.Addr) bool {
	if !bool(s.current.Load().ProtectedMode) || !s.listensBeyondLoopback || !s.users.Load().Default().NoPass() {
		return false
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := tcp.IP.String()
	return ip != "127.0.0.1" && ip != "::1"
}

// beyondLoopback tells whether a listen address accepts connections from other hosts.
func beyondLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
