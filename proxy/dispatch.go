package proxy

import (
	"bytes"
	"strings"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// handler answers one command that is not a plain single-slot forward.
type handler func(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64)

// The per-command tables, indexed by command.Command.Index. Built once at init from names, so the hot path
// is a slice index.
var (
	handlers   []handler
	idempotent []bool // safe to resend after a connection died with the command in flight
)

var handlerNames = map[string]handler{
	"multi":   cmdMulti,
	"exec":    cmdExecWithoutMulti,
	"discard": cmdDiscardWithoutMulti,
	"watch":   cmdWatch,
	"unwatch": cmdUnwatch,

	"subscribe":    cmdSubscribe,
	"psubscribe":   cmdSubscribe,
	"ssubscribe":   cmdSsubscribe,
	"unsubscribe":  cmdUnsubscribe,
	"punsubscribe": cmdUnsubscribe,
	"sunsubscribe": cmdSunsubscribe,
	"publish":      cmdPublish,
	"wait":         cmdWait,
	"spublish":     cmdSpublish,

	"pubsub|channels":      cmdPubsubQuery,
	"pubsub|numsub":        cmdPubsubQuery,
	"pubsub|numpat":        cmdPubsubQuery,
	"pubsub|shardchannels": cmdPubsubQuery,
	"pubsub|shardnumsub":   cmdPubsubQuery,

	"ping":   cmdPing,
	"echo":   cmdEcho,
	"quit":   cmdQuit,
	"select": cmdSelect,
	"hello":  cmdHello,
	"auth":   cmdAuth,
	"reset":  cmdReset,

	"acl|whoami":  cmdACLWhoami,
	"acl|users":   cmdACLUsers,
	"acl|list":    cmdACLList,
	"acl|getuser": cmdACLGetuser,
	"acl|cat":     cmdACLCat,
	"acl|genpass": cmdACLGenpass,
	"acl|dryrun":  cmdACLDryrun,
	"acl|log":     cmdACLLog,
	"acl|setuser": refuseACLChange,
	"acl|deluser": refuseACLChange,
	"acl|load":    refuseACLChange,
	"acl|save":    refuseACLChange,

	"client|setname":  cmdClientSetname,
	"client|getname":  cmdClientGetname,
	"client|id":       cmdClientID,
	"client|info":     cmdClientInfo,
	"client|list":     cmdClientList,
	"client|kill":     cmdClientKill,
	"client|no-evict": cmdClientNoEvict,
	"client|reply":    cmdClientReply,
	"client|tracking": refuse("ERR CLIENT TRACKING is not supported by the proxy: the nodes would send " +
		"invalidations for the proxy's shared connections, not for this client"),
	"client|caching":      refuse("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"),
	"client|getredir":     cmdClientGetredir,
	"client|trackinginfo": cmdClientTrackinginfo,
	"readonly":            cmdOK,
	"readwrite":           cmdOK,

	"info":         cmdInfo,
	"dbsize":       fanOutMasters(mergeSum),
	"flushall":     fanOutMasters(mergeOK),
	"flushdb":      fanOutMasters(mergeOK),
	"keys":         fanOutMasters(mergeConcat),
	"script|load":  fanOutMasters(mergeFirst),
	"script|flush": fanOutMasters(mergeOK),
	"scan":         cmdScan,

	"config|get":       cmdConfigGet,
	"config|set":       cmdConfigSet,
	"config|resetstat": cmdConfigResetstat,
	"config|rewrite":   refuse(errRewrite),

	"function|load":    fanOutMasters(mergeFirst),
	"function|delete":  fanOutMasters(mergeOK),
	"function|flush":   fanOutMasters(mergeOK),
	"function|restore": fanOutMasters(mergeOK),

	"mget":   fanOutKeys(mergeMGET, 1),
	"mset":   fanOutKeys(mergeOK, 2),
	"del":    fanOutKeys(mergeSum, 1),
	"unlink": fanOutKeys(mergeSum, 1),
	"exists": fanOutKeys(mergeSum, 1),
	"touch":  fanOutKeys(mergeSum, 1),

	"cluster|slots":           facadeCommand((*session).facadeSlots),
	"cluster|shards":          facadeCommand((*session).facadeShards),
	"cluster|nodes":           facadeCommand((*session).facadeNodes),
	"cluster|info":            facadeCommand((*session).facadeInfo),
	"cluster|myid":            facadeCommand((*session).facadeMyID),
	"cluster|keyslot":         facadeCommand((*session).facadeKeyslot),
	"cluster|countkeysinslot": cmdClusterSlotKeys,
	"cluster|getkeysinslot":   cmdClusterSlotKeys,

	"slowlog|get":   cmdSlowlogGet,
	"slowlog|len":   cmdSlowlogLen,
	"slowlog|reset": cmdSlowlogReset,

	"move":   refuse("ERR MOVE is not allowed in cluster mode"),
	"swapdb": refuse("ERR SWAPDB is not allowed in cluster mode"),
}

// notYet are commands the proxy cannot serve as Redis does: refused with the reason rather than served
// wrongly.
var notYet = map[string]string{
	"monitor": "ERR MONITOR is not supported by the proxy: a node would show its own commands, sent by the " +
		"proxy; run MONITOR on the nodes",
}

var idempotentNames = []string{
	"set", "mset", "del", "unlink", "setex", "psetex", "persist", "expireat", "pexpireat",
	"hset", "hmset", "hdel", "sadd", "srem", "zadd", "zrem", "touch", "exists",
}

// notYetSet holds the names of notYet, for transactions to refuse them too.
var notYetSet = map[string]bool{}

func init() {
	byName := make(map[string]*command.Command)
	for _, c := range command.All() {
		byName[c.Name] = c
	}
	handlers = make([]handler, command.Count())
	idempotent = make([]bool, command.Count())
	for name, h := range handlerNames {
		if c := byName[name]; c != nil && h != nil {
			handlers[c.Index] = h
		}
	}
	for name, why := range notYet {
		notYetSet[name] = true
		if c := byName[name]; c != nil {
			handlers[c.Index] = refuse(why)
		}
	}
	for _, c := range command.All() {
		idempotent[c.Index] = c.Has(command.ReadOnly)
		// The cluster's own commands would tell clients they talk to a cluster, or act on one node of many.
		if strings.HasPrefix(c.Name, "cluster") && handlers[c.Index] == nil {
			handlers[c.Index] = refuse(notSupported(c))
		}
	}
	for _, name := range idempotentNames {
		if c := byName[name]; c != nil {
			idempotent[c.Index] = true
		}
	}
}

func refuse(msg string) handler {
	reply := resp.AppendError(nil, msg)
	return func(s *session, _ *command.Command, _ [][]byte, _ []byte, _ int64) { s.local(reply) }
}

// dispatch answers, forwards or splits one command.
func (s *session) dispatch(args [][]byte, raw []byte, now int64) {
	cmd, st := command.Lookup(args)
	s.curCmd, s.curStart = -1, now
	s.work().curArgs = args
	if cmd != nil {
		s.curCmd = int32(cmd.Index)
	}
	s.silentNow = s.replyOff || s.skipNext
	s.skipNext = false
	if s.gated && st == command.LookupOK && s.refused(cmd, args) {
		if s.tx != nil {
			s.tx.dirty = true // Redis's flagTransaction: EXEC aborts
		}
		return
	}
	if s.tx != nil {
		s.txCommand(cmd, st, args, raw, now)
		return
	}
	switch st {
	case command.Unknown:
		s.local(resp.AppendError(nil, command.UnknownCommandError(args)))
		return
	case command.UnknownSubcommand:
		if isClientSetinfo(args) {
			cmdClientSetinfo(s, args)
			return
		}
		s.local(resp.AppendError(nil, command.UnknownSubcommandError(args)))
		return
	case command.WrongArity:
		s.local(resp.AppendError(nil, command.ArityError(cmd)))
		return
	}
	if s.ps != nil && !s.resp3 && s.subscribed() && !subscribedOK[cmd.Name] {
		s.local(errSubscribedMode(cmd))
		return
	}
	if h := handlers[cmd.Index]; h != nil {
		h(s, cmd, args, raw, now)
		return
	}
	if cmd.Has(command.Blocking) && isBlocking(cmd, args) {
		s.block(cmd, args, raw, now)
		return
	}
	s.forward(cmd, args, raw, now)
}

// isBlocking tells whether a command flagged blocking blocks in this form: XREAD and XREADGROUP only with BLOCK.
func isBlocking(cmd *command.Command, args [][]byte) bool {
	if cmd.Name != "xread" && cmd.Name != "xreadgroup" {
		return true
	}
	for _, a := range args[1:] {
		if bytes.EqualFold(a, []byte("block")) {
			return true
		}
		if bytes.EqualFold(a, []byte("streams")) {
			return false
		}
	}
	return false
}

// forward sends a command whose keys all hash to one slot to that slot's node. Keyless commands go to any
// master; admin commands without keys are refused (they would act on one node of many).
func (s *session) forward(cmd *command.Command, args [][]byte, raw []byte, now int64) {
	// The keys Redis Cluster itself routes by (SPUBLISH's channel included), not COMMAND GETKEYS's.
	w := s.work()
	keys := command.ClusterKeyIndexes(cmd, args, w.keys[:0])
	w.keys = keys[:0]
	if len(keys) == 0 {
		if cmd.Has(command.Admin) {
			s.local(errNotSupported(cmd))
			return
		}
		// Keyless, or key-count arguments Redis will reject: any master answers as Redis would.
		s.forwardSlot(cmd, args, raw, s.l.randomSlot(), now)
		return
	}
	slot, ok := keysSlot(args, keys)
	if !ok {
		s.local(errCrossSlot)
		return
	}
	s.forwardSlot(cmd, args, raw, int(slot), now)
}

// keysSlot is the slot of the keys at positions keys of args, if they share one.
func keysSlot(args [][]byte, keys []int) (uint16, bool) {
	slot := topology.Slot(args[keys[0]])
	for _, k := range keys[1:] {
		if topology.Slot(args[k]) != slot {
			return 0, false
		}
	}
	return slot, true
}

var errCrossSlot = resp.AppendError(nil, "CROSSSLOT Keys in request don't hash to the same slot")

func (s *session) forwardSlot(cmd *command.Command, args [][]byte, raw []byte, slot int, now int64) {
	r := s.l.newRequest(s)
	if s.ownRaw && s.rawAtStart && raw[0] == '*' && s.w.in.Take() {
		// Only the request that starts the buffer takes it (the Inbox holds a request from its first byte),
		// with the buffer's whole capacity, so that release can recycle it; appending is never done to it.
		// Another request in the same buffer is copied: the buffer goes back to the loop's pool when the
		// first is done, while a later one may still wait to be written.
		r.be.Raw = raw
	} else {
		r.be.Raw = appendRaw(r.be.Raw, args, raw)
	}
	s.prepare(r, cmd, slot, now)
	s.send(r)
}

func (s *session) prepare(r *request, cmd *command.Command, slot int, now int64) {
	r.be.Slot = slot
	r.be.Deadline = now + s.l.timeout
	r.be.ReadOnly = cmd.Has(command.ReadOnly)
	r.be.Idempotent = idempotent[cmd.Index]
}

// appendRaw copies a multibulk request as the client sent it; inline requests are re-encoded.
func appendRaw(dst []byte, args [][]byte, raw []byte) []byte {
	if len(raw) > 0 && raw[0] == '*' {
		return append(dst[:0], raw...)
	}
	return resp.AppendCommand(dst[:0], args...)
}
