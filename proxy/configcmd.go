package proxy

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// CONFIG GET, SET, RESETSTAT and REWRITE answer as one standalone Redis 7.0 would (config.c, configGetCommand
// and configSetCommand), over parameters of two kinds:
//
//   - The proxy's own (ownedParams): what a client experiences there is the proxy, not the nodes. timeout,
//     maxclients and tcp-keepalive are settable (liveConfig). client-query-buffer-limit, port, bind and the
//     normal class of client-output-buffer-limit come from proxy.yaml and are not settable: the code that
//     reads them (gnet's listener; session.go, tx.go and backpressure.go) takes them from Config, which is
//     not written at run time. tcp-keepalive applies to the connections accepted after it, as in Redis.
//     databases (1: the proxy serves db 0 only) and cluster-enabled (no, as INFO says) are immutable in
//     Redis too. A proxy parameter is never sent to the nodes: their timeout or maxclients would apply to
//     the proxy's own connections.
//   - Every other parameter is the nodes'.
//
// CONFIG GET pattern [pattern ...] goes to every master, by one slot of each (as fanOutMasters), and the
// replies are merged: each parameter once (names compared without case, as Redis's dict does), in the order
// the first master (the shard of the lowest slots) gave them, then any the others added; a proxy parameter
// has the proxy's value. Masters normally agree; where they do not, the first master's value is answered.
// Redis's own order is its dict's, seeded at random per process, so no order is "the" standalone order. An
// error from any master is the reply.
//
// CONFIG SET param value [param value ...] is all or nothing, as in Redis:
//
//	odd argument count                          ERR syntax error
//	checked in argument order; the first failure is answered and nothing changes:
//	  a proxy parameter that is not settable    Redis's "can't set immutable config", or where it is set
//	  client-output-buffer-limit                Redis's error for a bad value; refused if it sets normal
//	  a per-node parameter (perNodeParams)      refused: one value for every node makes no sense
//	  a node parameter, broadcast off           refused, naming config_set_broadcast
//	  a proxy parameter twice                   "duplicate parameter"
//	then the proxy parameters' values           Redis's own error text for a bad one
//	only proxy parameters                       applied at once, +OK
//	node parameters as well                     CONFIG SET of the node pairs on every node of the slot map
//	                                            (masters and replicas, so that a failover keeps the value):
//	  every node +OK                            the proxy parameters applied, +OK
//	  every node the same error                 that error (Redis's text: a bad value, an unknown parameter)
//	  otherwise                                 an error saying how many nodes took it and the first that did
//	                                            not, and why; the proxy parameters unchanged; the nodes that
//	                                            took it keep it (there is no rollback across nodes)
//
// With several bad arguments the proxy's checks come before the nodes', so the error may name another
// argument than Redis would; nothing changes either way. The nodes get the command on connections leased for
// it, not on the client's pipelined ones, so it may run on a node before a command the client sent earlier
// runs there; its reply still comes in the client's order.
//
// CONFIG RESETSTAT resets every node's statistics when config_set_broadcast is on, and is refused otherwise
// (resetting one node's, or none, and answering +OK would be a lie). The proxy's own counters (INFO # Proxy)
// are not reset: they are Prometheus counters, which only go up.
//
// CONFIG REWRITE is refused: the proxy's parameters live in proxy.yaml, which the proxy does not rewrite,
// and each node's configuration file is the node's business (CONFIG REWRITE on the node). A CONFIG SET
// through the proxy lasts until the proxy, or for node parameters the node, restarts.

// ownedParam is a parameter the proxy answers for itself.
type ownedParam struct {
	get func(s *Server) string // the proxy's value
	// set parses a CONFIG SET value into what to store in the liveConfig field of to, or returns Redis's error
	// text. nil: not settable, and fixed says why.
	set   func(v []byte) (int64, string)
	to    func(lc *liveConfig) *atomic.Int64
	fixed string
}

var ownedParams = map[string]ownedParam{
	"timeout": {
		get: func(s *Server) string { return seconds(s.live.idleTimeout.Load()) },
		set: secondsValue, to: func(lc *liveConfig) *atomic.Int64 { return &lc.idleTimeout },
	},
	"tcp-keepalive": {
		get: func(s *Server) string { return seconds(s.live.tcpKeepalive.Load()) },
		set: secondsValue, to: func(lc *liveConfig) *atomic.Int64 { return &lc.tcpKeepalive },
	},
	"maxclients": {
		get: func(s *Server) string {
			if n := s.live.maxClients.Load(); n > 0 {
				return strconv.FormatInt(n, 10)
			}
			return strconv.Itoa(math.MaxUint32) // max_clients 0, no limit: Redis has no 0, its largest says as much
		},
		set: func(v []byte) (int64, string) { return intValue(v, 1, math.MaxUint32) }, // Redis's UInt config
		to:  func(lc *liveConfig) *atomic.Int64 { return &lc.maxClients },
	},
	"client-query-buffer-limit": {
		get:   func(s *Server) string { return strconv.FormatInt(s.live.queryLimit.Load(), 10) },
		fixed: "the proxy's limit is client_query_buffer_limit in proxy.yaml",
	},
	"port": {
		get: func(s *Server) string {
			_, port, _ := net.SplitHostPort(s.Addr())
			return port
		},
		fixed: "the proxy listens where listen in proxy.yaml says",
	},
	"bind": {
		get: func(s *Server) string {
			host, _, _ := net.SplitHostPort(s.cfg.Listen)
			if host == "" {
				return "* -::*" // every address, IPv4 and IPv6, in Redis's words
			}
			return host
		},
		fixed: "the proxy listens where listen in proxy.yaml says",
	},
	"slowlog-log-slower-than": {
		get: func(s *Server) string { return strconv.FormatInt(s.live.slowlogSlower.Load(), 10) },
		set: func(v []byte) (int64, string) { return intValue(v, -1, math.MaxInt64) },
		to:  func(lc *liveConfig) *atomic.Int64 { return &lc.slowlogSlower },
	},
	"slowlog-max-len": {
		get: func(s *Server) string { return strconv.FormatInt(s.live.slowlogMaxLen.Load(), 10) },
		set: func(v []byte) (int64, string) { return intValue(v, 0, math.MaxInt64) },
		to:  func(lc *liveConfig) *atomic.Int64 { return &lc.slowlogMaxLen },
	},
	"databases":       {get: func(*Server) string { return "1" }, fixed: errImmutable},
	"cluster-enabled": {get: func(*Server) string { return "no" }, fixed: errImmutable},
}

const (
	errImmutable = "can't set immutable config" // Redis's text
	outputLimit  = "client-output-buffer-limit" // the normal class is the proxy's, the others the nodes'
)

// perNodeParams hold one node's own address or files: the same value on every node would break the cluster.
var perNodeParams = map[string]bool{
	"cluster-announce-ip": true, "cluster-announce-hostname": true, "cluster-announce-port": true,
	"cluster-announce-bus-port": true, "cluster-announce-tls-port": true, "replica-announce-ip": true,
	"slave-announce-ip": true, "replica-announce-port": true, "slave-announce-port": true, "tls-port": true,
	"dir": true, "bind-source-addr": true,
}

func cfgSetError(arg, why string) []byte {
	return resp.AppendError(nil, "ERR CONFIG SET failed (possibly related to argument '"+arg+"') - "+why)
}

var (
	errResetstatOff = resp.AppendError(nil, "ERR CONFIG RESETSTAT resets every node's statistics: the proxy "+
		"sends it to the nodes only with config_set_broadcast: true in proxy.yaml")
	errRewrite = "ERR CONFIG REWRITE is not supported by the proxy: its own parameters are set in proxy.yaml, " +
		"and each node rewrites its own configuration file"
)

func cmdConfigGet(s *session, _ *command.Command, args [][]byte, raw []byte, now int64) {
	snap := s.l.pool.Snapshot()
	if snap == nil {
		s.local(errClusterDown)
		return
	}
	slots := s.l.shardSlots(snap)
	g := s.newNodeCalls(len(slots), func(g *nodeCalls) []byte { return g.configGetReply(s) })
	cmd := appendRaw(nil, args, raw)
	for i, slot := range slots {
		be := &g.calls[i].be
		be.Raw, be.Slot, be.Deadline = cmd, slot, now+s.l.timeout
		be.Idempotent, be.Affinity = true, uint32(s.id)
	}
	s.work().queue.Push(g.r)
	for i := range g.calls {
		s.pool().Send(&g.calls[i].be)
	}
}

// configGetReply merges the masters' CONFIG GET replies (see the comment at the top of the file).
// A RESP3 session's nodes answer a map, and so does the merge.
func (g *nodeCalls) configGetReply(s *session) []byte {
	for i := range g.calls {
		if resp.IsError(g.calls[i].reply) {
			return g.calls[i].reply
		}
	}
	var pairs [][2][]byte // name, value
	seen := map[string]bool{}
	var elems [][]byte
	for i := range g.calls {
		c := &g.calls[i]
		var ok bool
		if len(c.reply) > 0 && c.reply[0] == '%' {
			elems, ok = resp.MapElems(c.reply, elems[:0])
		} else {
			elems, ok = resp.ArrayElems(c.reply, elems[:0])
		}
		if !ok || len(elems)%2 != 0 {
			return c.reply
		}
		for j := 0; j < len(elems); j += 2 {
			name, _, ok1 := resp.BulkValue(elems[j])
			value, _, ok2 := resp.BulkValue(elems[j+1])
			if !ok1 || !ok2 {
				return c.reply
			}
			if key := strings.ToLower(string(name)); !seen[key] {
				seen[key] = true
				pairs = append(pairs, [2][]byte{name, value})
			}
		}
	}
	out := s.appendMapHeader(nil, len(pairs))
	for _, p := range pairs {
		name, value := p[0], p[1]
		key := strings.ToLower(string(name))
		if o, ok := ownedParams[key]; ok {
			value = []byte(o.get(g.srv))
		} else if key == outputLimit {
			value = g.srv.outputLimitValue(value)
		}
		out = resp.AppendBulk(out, name)
		out = resp.AppendBulk(out, value)
	}
	return out
}

// outputLimitValue is a node's client-output-buffer-limit ("normal 0 0 0 slave ... pubsub ...") with the
// proxy's normal class.
func (s *Server) outputLimitValue(node []byte) []byte {
	f := strings.Split(string(node), " ")
	if len(f) < 4 || !strings.EqualFold(f[0], "normal") {
		return node
	}
	lim := *s.live.outputLimit.Load()
	f[1] = strconv.FormatInt(int64(lim.Hard), 10)
	f[2] = strconv.FormatInt(int64(lim.Soft), 10)
	f[3] = seconds(int64(lim.SoftSeconds))
	return []byte(strings.Join(f, " "))
}

func cmdConfigSet(s *session, _ *command.Command, args [][]byte, _ []byte, now int64) {
	if len(args)%2 != 0 {
		s.local(errSyntax)
		return
	}
	srv := s.l.srv
	var owned []int // argument index of each proxy parameter
	nodeArgs := [][]byte{args[0], args[1]}
	for i := 2; i < len(args); i += 2 {
		arg := string(args[i])
		name := strings.ToLower(arg)
		if p, ok := ownedParams[name]; ok {
			if p.set == nil {
				s.local(cfgSetError(arg, p.fixed))
				return
			}
			for _, j := range owned {
				if strings.EqualFold(string(args[j]), name) {
					s.local(cfgSetError(arg, "duplicate parameter"))
					return
				}
			}
			owned = append(owned, i)
			continue
		}
		if name == outputLimit {
			normal, why := checkOutputLimit(args[i+1])
			if why == "" && normal {
				why = "its normal class is the proxy's own: set client_output_buffer_limit in proxy.yaml"
			}
			if why != "" {
				s.local(cfgSetError(outputLimit, why))
				return
			}
		}
		switch {
		case perNodeParams[name]:
			s.local(cfgSetError(arg, "a parameter of one node: set it on each node, the proxy does not send it to all"))
			return
		case !srv.cfg.ConfigSetBroadcast:
			s.local(cfgSetError(arg, "the proxy sends a node parameter to every node only with "+
				"config_set_broadcast: true in proxy.yaml"))
			return
		}
		nodeArgs = append(nodeArgs, args[i], args[i+1])
	}
	type change struct {
		to *atomic.Int64
		v  int64
	}
	changes := make([]change, 0, len(owned))
	for _, i := range owned {
		name := strings.ToLower(string(args[i]))
		p := ownedParams[name]
		v, why := p.set(args[i+1])
		if why != "" {
			s.local(cfgSetError(name, why)) // Redis names the parameter itself for a bad value, not the argument
			return
		}
		changes = append(changes, change{p.to(&srv.live), v})
	}
	apply := func() {
		for _, c := range changes {
			c.to.Store(c.v)
		}
	}
	if len(nodeArgs) == 2 {
		apply()
		s.local(resp.AppendOK(nil))
		return
	}
	s.toEveryNode(resp.AppendCommand(nil, nodeArgs...), "CONFIG SET", now, apply)
}

func cmdConfigResetstat(s *session, _ *command.Command, args [][]byte, raw []byte, now int64) {
	if !s.l.srv.cfg.ConfigSetBroadcast {
		s.local(errResetstatOff)
		return
	}
	s.toEveryNode(appendRaw(nil, args, raw), "CONFIG RESETSTAT", now, nil)
}

// toEveryNode sends cmd to every node of the slot map, each on a connection leased for it (the pipelined
// connections go by slot, to masters), and answers +OK when every node did, then running applied if not nil.
func (s *session) toEveryNode(cmd []byte, what string, now int64, applied func()) {
	p := s.pool()
	snap := p.Snapshot()
	if snap == nil {
		s.local(errClusterDown)
		return
	}
	g := s.newNodeCalls(len(snap.Nodes), func(g *nodeCalls) []byte { return g.everyNodeReply(what, applied) })
	for i := range g.calls {
		c := &g.calls[i]
		c.addr = snap.Nodes[i].Addr
		c.be.Raw, c.be.Deadline = cmd, now+s.l.timeout
	}
	s.work().queue.Push(g.r)
	for i := range g.calls {
		c := &g.calls[i]
		if c.lease = p.Lease(c.addr); c.lease == nil {
			c.Reply(&c.be, s.l.errMaxLeased(c.addr))
			continue
		}
		c.lease.Send(&c.be)
	}
}

// everyNodeReply is +OK when every node said so (see the comment at the top of the file for the rest).
func (g *nodeCalls) everyNodeReply(what string, applied func()) []byte {
	took := 0
	var first *nodeCall
	same := true
	for i := range g.calls {
		c := &g.calls[i]
		switch {
		case !resp.IsError(c.reply):
			took++
		case first == nil:
			first = c
		case !bytes.Equal(c.reply, first.reply):
			same = false
		}
	}
	switch {
	case first == nil:
		if applied != nil {
			applied()
		}
		return resp.AppendOK(nil)
	case took == 0 && same:
		return first.reply
	}
	return resp.AppendError(nil, fmt.Sprintf("ERR %s took effect on %d of %d nodes; %s answered: %s", what, took,
		len(g.calls), first.addr, bytes.TrimSuffix(first.reply[1:], []byte("\r\n"))))
}

// nodeCalls is one client command sent to several nodes. The client's request r waits in its session's queue,
// in order, and is never sent itself; once every node answered, done builds its reply.
type nodeCalls struct {
	r       *request
	srv     *Server
	calls   []nodeCall
	pending int
	done    func(g *nodeCalls) []byte
}

// nodeCall is one node's part of a nodeCalls. Owned by the session's loop.
type nodeCall struct {
	be    backend.Request
	g     *nodeCalls
	addr  string         // the node, for errors (toEveryNode)
	lease *backend.Lease // toEveryNode's leased connection, until the reply
	reply []byte
}

func (s *session) newNodeCalls(n int, done func(g *nodeCalls) []byte) *nodeCalls {
	g := &nodeCalls{r: s.l.newRequest(s), srv: s.l.srv, calls: make([]nodeCall, n), pending: n, done: done}
	for i := range g.calls {
		g.calls[i].g = g
		g.calls[i].be.Sink = &g.calls[i]
	}
	return g
}

// Reply takes the node's reply (backend.Sink). It may come while the call is being sent.
func (c *nodeCall) Reply(_ *backend.Request, reply []byte) {
	c.reply = append(c.reply[:0], reply...)
	if c.lease != nil {
		c.lease.Release()
		c.lease = nil
	}
	g := c.g
	if g.pending--; g.pending == 0 {
		g.r.finish(g.done(g))
	}
}

// seconds is a duration in ns as Redis's whole seconds, rounded up: 500ms is 1, not 0, which would mean "off".
func seconds(ns int64) string {
	return strconv.FormatInt((ns+int64(time.Second)-1)/int64(time.Second), 10)
}

// secondsValue parses a CONFIG SET value of timeout or tcp-keepalive (Redis's int, 0..INT_MAX seconds) into ns.
func secondsValue(v []byte) (int64, string) {
	n, why := intValue(v, 0, math.MaxInt32)
	return n * int64(time.Second), why
}

// intValue parses a CONFIG SET value of an integer parameter as Redis does (string2ll, then the bounds; a
// negative value of an unsigned parameter is out of its bounds too), with Redis's error texts.
func intValue(v []byte, lo, hi int64) (int64, string) {
	n, ok := resp.ParseDecimal(v)
	switch {
	case !ok:
		return 0, "argument couldn't be parsed into an integer"
	case n < lo || n > hi:
		return 0, fmt.Sprintf("argument must be between %d and %d inclusive", lo, hi)
	}
	return n, ""
}

// checkOutputLimit checks a client-output-buffer-limit value as Redis's updateClientOutputBufferLimit does
// (split on single spaces, groups of class hard soft soft_seconds), with its error texts, and tells whether
// it sets the normal class.
func checkOutputLimit(v []byte) (normal bool, why string) {
	var f []string
	if len(v) > 0 {
		f = strings.Split(string(v), " ")
	}
	if len(f)%4 != 0 {
		return false, "Wrong number of arguments in buffer limit configuration."
	}
	for j := 0; j < len(f); j += 4 {
		switch strings.ToLower(f[j]) {
		case "normal":
			normal = true
		case "slave", "replica", "pubsub":
		default:
			return false, "Invalid client class specified in buffer limit configuration."
		}
		if !isMemory(f[j+1]) || !isMemory(f[j+2]) || !isSeconds(f[j+3]) {
			return false, "Error in hard, soft or soft_seconds setting in buffer limit configuration."
		}
	}
	return normal, ""
}

// isMemory tells whether Redis's memtoull takes s: digits (possibly none) and a unit of b, k, kb, m, mb, g
// or gb, any case, or none.
func isMemory(s string) bool {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i >= 128 {
		return false
	}
	switch strings.ToLower(s[i:]) {
	case "", "b", "k", "kb", "m", "mb", "g", "gb":
		return true
	}
	return false
}

// isSeconds tells whether Redis takes s as soft_seconds: "", or all of it read by strtoll (leading blanks, a
// sign, digits) into an int that is not negative.
func isSeconds(s string) bool {
	if s == "" {
		return true
	}
	d := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if d != "" && (d[0] == '+' || d[0] == '-') {
		neg, d = d[0] == '-', d[1:]
	}
	n, err := strconv.ParseUint(d, 10, 31)
	return err == nil && (!neg || n == 0)
}
