// Package command is the Redis command table: for every command and subcommand of the Redis version it was
// generated from, its arity, flags, ACL categories, tips and key specifications, plus the lookup that finds
// the command of a request and the rules that find its keys (keys.go).
//
// table_gen.go is generated from a real server's COMMAND reply by internal/gen. To remake it (this starts a
// throwaway redis-server on a free port, reads COMMAND and stops the server):
//
//	go generate ./proxy/command
//
// or, against a server that is already running:
//
//	go run ./proxy/command/internal/gen -addr 127.0.0.1:6379 -o proxy/command/table_gen.go
package command

import (
	"strconv"
	"strings"
)

//go:generate go run ./internal/gen -start redis-server -o table_gen.go

// Flag is a command flag, as COMMAND reports it.
type Flag uint32

// The command flags of Redis 7.0. COMMAND does not report MayReplicate, Sentinel, OnlySentinel and Protected
// ("hidden on purpose" in Redis's addReplyCommandFlags), so the generated table never sets them; they are
// here so that every CMD_* flag of 7.0 has a name.
const (
	Write           Flag = 1 << iota // write
	ReadOnly                         // readonly
	DenyOOM                          // denyoom
	Module                           // module
	Admin                            // admin
	PubSub                           // pubsub
	NoScript                         // noscript
	Blocking                         // blocking
	Loading                          // loading
	Stale                            // stale
	SkipMonitor                      // skip_monitor
	SkipSlowlog                      // skip_slowlog
	Asking                           // asking
	Fast                             // fast
	NoAuth                           // no_auth
	MayReplicate                     // may_replicate (never reported by COMMAND)
	Sentinel                         // sentinel (never reported by COMMAND)
	OnlySentinel                     // only_sentinel (never reported by COMMAND)
	NoMandatoryKeys                  // no_mandatory_keys
	Protected                        // protected (never reported by COMMAND)
	NoAsyncLoading                   // no_async_loading
	NoMulti                          // no_multi
	MovableKeys                      // movablekeys
	AllowBusy                        // allow_busy
)

var flagNames = [...]string{
	"write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking", "loading", "stale",
	"skip_monitor", "skip_slowlog", "asking", "fast", "no_auth", "may_replicate", "sentinel", "only_sentinel",
	"no_mandatory_keys", "protected", "no_async_loading", "no_multi", "movablekeys", "allow_busy",
}

// String lists the flags with COMMAND's names, in bit order, separated by "|".
func (f Flag) String() string { return bitNames(uint64(f), flagNames[:]) }

// Category is a set of ACL categories (@read, @write, ...).
type Category uint32

// The ACL categories of Redis 7.0.
const (
	CatKeyspace    Category = 1 << iota // @keyspace
	CatRead                             // @read
	CatWrite                            // @write
	CatSet                              // @set
	CatSortedSet                        // @sortedset
	CatList                             // @list
	CatHash                             // @hash
	CatString                           // @string
	CatBitmap                           // @bitmap
	CatHyperLogLog                      // @hyperloglog
	CatGeo                              // @geo
	CatStream                           // @stream
	CatPubSub                           // @pubsub
	CatAdmin                            // @admin
	CatFast                             // @fast
	CatSlow                             // @slow
	CatBlocking                         // @blocking
	CatDangerous                        // @dangerous
	CatConnection                       // @connection
	CatTransaction                      // @transaction
	CatScripting                        // @scripting
)

var categoryNames = [...]string{
	"@keyspace", "@read", "@write", "@set", "@sortedset", "@list", "@hash", "@string", "@bitmap",
	"@hyperloglog", "@geo", "@stream", "@pubsub", "@admin", "@fast", "@slow", "@blocking", "@dangerous",
	"@connection", "@transaction", "@scripting",
}

// String lists the categories with their ACL names ("@read|@fast"), in bit order.
func (c Category) String() string { return bitNames(uint64(c), categoryNames[:]) }

// KeySpecFlag is a flag of a key specification.
type KeySpecFlag uint16

// Key specification flags, as COMMAND reports them.
const (
	KeyRO            KeySpecFlag = 1 << iota // RO
	KeyRW                                    // RW
	KeyOW                                    // OW
	KeyRM                                    // RM
	KeyAccess                                // access
	KeyUpdate                                // update
	KeyInsert                                // insert
	KeyDelete                                // delete
	KeyNotKey                                // not_key: a shard channel, not a key; COMMAND GETKEYS skips it
	KeyIncomplete                            // incomplete: the spec may miss keys
	KeyVariableFlags                         // variable_flags: the flags depend on the arguments
)

var keySpecFlagNames = [...]string{
	"RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key", "incomplete", "variable_flags",
}

// String lists the flags with COMMAND's names, separated by "|".
func (f KeySpecFlag) String() string { return bitNames(uint64(f), keySpecFlagNames[:]) }

// BeginSearch is how a key specification finds where its keys begin.
type BeginSearch uint8

const (
	BeginUnknown BeginSearch = iota // the keys cannot be found from the spec (SORT's BY/GET/STORE)
	BeginIndex                      // at argument Index
	BeginKeyword                    // after Keyword, searched for from StartFrom
)

// FindKeys is how a key specification finds its keys once it knows where they begin.
type FindKeys uint8

const (
	FindUnknown FindKeys = iota // the keys cannot be found from the spec
	FindRange                   // LastKey, KeyStep, Limit
	FindKeynum                  // KeyNumIdx, FirstKey, KeyStep
)

// KeySpec is one Redis 7 key specification ("Command key specifications" in the Redis docs). Positions
// are argument indexes, the command name being 0.
type KeySpec struct {
	Flags KeySpecFlag

	BeginSearch BeginSearch
	Index       int    // BeginIndex: the first key's position
	Keyword     string // BeginKeyword: the keys begin right after this argument (compared case-insensitively)
	StartFrom   int    // BeginKeyword: where the search starts; negative counts from the end and searches backwards

	FindKeys  FindKeys
	LastKey   int // FindRange: last key relative to the first; negative counts from the end of the arguments
	KeyStep   int // FindRange and FindKeynum: distance between keys
	Limit     int // FindRange with LastKey -1: only the first 1/Limit of the remaining arguments are keys
	KeyNumIdx int // FindKeynum: position of the key count, relative to where the search began
	FirstKey  int // FindKeynum: position of the first key, relative to where the search began
}

// Command describes one command or subcommand. Values in the table are never modified after init.
type Command struct {
	Name        string   // lower case; a subcommand is "container|sub", e.g. "client|setname"
	Arity       int      // n: exactly n arguments (the name included); -n: at least n
	Flags       Flag     // command flags
	FirstKey    int      // legacy key range: first key position, 0 if none
	LastKey     int      // legacy key range: last key position, negative counts from the end
	Step        int      // legacy key range: distance between keys
	Categories  Category // ACL categories
	Tips        []string // command tips, e.g. "nondeterministic_output", "request_policy:all_shards"
	KeySpecs    []KeySpec
	Subcommands map[string]*Command // by lower-case subcommand name ("setname"); nil unless a container
	Parent      *Command            // the container of a subcommand; nil for a top-level command
	Index       int                 // dense position in All(), for per-command arrays

	subs     *nameTable  // Subcommands, for Lookup
	getkeys  getkeysProc // Redis's getkeys_proc for the command, if it has one (keys.go)
	useSpecs bool        // Redis tries the key specs first: some spec is a key, none has variable flags
	hasKeys  bool        // Redis's doesCommandHaveKeys
}

// Has tells whether c has every flag in f.
func (c *Command) Has(f Flag) bool { return c.Flags&f == f }

// Status is the outcome of Lookup.
type Status uint8

const (
	LookupOK          Status = iota // the command exists and its argument count fits its arity
	Unknown                         // no such command
	UnknownSubcommand               // the command is a container and has no such subcommand
	WrongArity                      // the command exists; the argument count does not fit its arity
)

func (s Status) String() string {
	switch s {
	case LookupOK:
		return "LookupOK"
	case Unknown:
		return "Unknown"
	case UnknownSubcommand:
		return "UnknownSubcommand"
	case WrongArity:
		return "WrongArity"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// byName and topLevel hold the top-level commands only: as in Redis, "client|setname" is not a command name.
var (
	byName   = make(map[string]*Command, len(commands))
	topLevel *nameTable
)

func init() {
	for i := range commands {
		c := &commands[i]
		if c.Index != i {
			panic("command: table_gen.go: " + c.Name + " has Index " + strconv.Itoa(c.Index) + " at position " + strconv.Itoa(i))
		}
		parent, sub, isSub := strings.Cut(c.Name, "|")
		if len(parent) > maxNameLen || len(sub) > maxNameLen {
			panic("command: table_gen.go: " + c.Name + " is longer than maxNameLen")
		}
		if isSub {
			p := byName[parent]
			if p == nil {
				panic("command: table_gen.go: subcommand " + c.Name + " before its container")
			}
			if p.Subcommands == nil {
				p.Subcommands = make(map[string]*Command)
			}
			p.Subcommands[sub] = c
			c.Parent = p
		} else {
			byName[c.Name] = c
		}
		c.getkeys = getkeysProcs[c.Name]
		hasKeySpec, varFlags := false, false
		for _, s := range c.KeySpecs {
			hasKeySpec = hasKeySpec || s.Flags&KeyNotKey == 0
			varFlags = varFlags || s.Flags&KeyVariableFlags != 0
		}
		c.useSpecs = hasKeySpec && !varFlags
		c.hasKeys = c.getkeys != nil || hasKeySpec
		all[i] = c
	}
	topLevel = tableOf(byName)
	for _, c := range byName {
		if c.Subcommands != nil {
			c.subs = tableOf(c.Subcommands)
		}
	}
}

func tableOf(m map[string]*Command) *nameTable {
	names := make([]string, 0, len(m))
	cmds := make([]*Command, 0, len(m))
	for name, c := range m {
		names = append(names, name)
		cmds = append(cmds, c)
	}
	return newNameTable(names, cmds)
}

var all = make([]*Command, len(commands))

// All returns every command and subcommand, ordered by Index: the top-level commands by name, each container
// followed by its subcommands by name. The caller must not modify the slice or the commands.
func All() []*Command { return all }

// Count is the number of commands and subcommands: every Index is below it.
func Count() int { return len(commands) }

// Lookup finds the command of a request as Redis 7.0's processCommand does: args[0] names a command in any
// case; if that is a container and there is a second argument, args[1] names the subcommand. It returns
//
//	(cmd, LookupOK)                 the command or subcommand, and len(args) fits its arity
//	(nil, Unknown)                  args[0] is no command (reply with UnknownCommandError)
//	(container, UnknownSubcommand)  args[1] is no subcommand of the container (UnknownSubcommandError)
//	(cmd, WrongArity)               len(args) does not fit cmd's arity (ArityError)
//
// A container alone ("CONFIG") is checked against the container's own arity. Lookup does not allocate.
func Lookup(args [][]byte) (*Command, Status) {
	if len(args) == 0 {
		return nil, Unknown
	}
	c := topLevel.get(args[0])
	if c == nil {
		return nil, Unknown
	}
	if c.subs != nil && len(args) > 1 {
		s := c.subs.get(args[1])
		if s == nil {
			return c, UnknownSubcommand
		}
		c = s
	}
	if (c.Arity > 0 && c.Arity != len(args)) || len(args) < -c.Arity {
		return c, WrongArity
	}
	return c, LookupOK
}

// The error replies below are Redis 7.0.15's texts (processCommand and rejectCommandFormat in server.c),
// without the leading '-' and the trailing CRLF. Redis formats arguments with printf's %s, which stops at a
// NUL byte, and then turns every CR and LF of the message into a space; so do these functions.

// UnknownCommandError is the reply to an unknown command: "ERR unknown command 'foo', with args beginning
// with: 'a' 'b' ". The name is cut to 128 bytes, and arguments are shown until 128 bytes of them (quotes
// and spaces included) have been written.
func UnknownCommandError(args [][]byte) string {
	var name []byte
	if len(args) > 0 {
		name = args[0]
	}
	b := make([]byte, 0, 80)
	b = append(b, "ERR unknown command '"...)
	b = append(b, cstr(name, 128)...)
	b = append(b, "', with args beginning with: "...)
	shown := 0 // sdslen(args) in Redis
	for i := 1; i < len(args) && shown < 128; i++ {
		a := cstr(args[i], 128-shown)
		b = append(b, '\'')
		b = append(b, a...)
		b = append(b, "' "...)
		shown += len(a) + 3
	}
	return string(spaceNewlines(b))
}

// UnknownSubcommandError is the reply to a container command with an unknown subcommand: "ERR unknown
// subcommand 'xyz'. Try CLIENT HELP." The subcommand is cut to 128 bytes.
func UnknownSubcommandError(args [][]byte) string {
	var name, sub []byte
	if len(args) > 0 {
		name = args[0]
	}
	if len(args) > 1 {
		sub = args[1]
	}
	b := make([]byte, 0, 64)
	b = append(b, "ERR unknown subcommand '"...)
	b = append(b, cstr(sub, 128)...)
	b = append(b, "'. Try "...)
	for _, c := range cstr(name, len(name)) {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	b = append(b, " HELP."...)
	return string(spaceNewlines(b))
}

// ArityError is the reply to a command with the wrong number of arguments: "ERR wrong number of arguments
// for 'get' command". Redis 7.0 names a subcommand by its full name: 'client|setname'. EXEC is the exception:
// Redis rejects it by aborting the transaction (execCommandAbort), with "EXECABORT Transaction discarded
// because of: wrong number of arguments for 'exec' command", in MULTI or not.
func ArityError(c *Command) string {
	msg := "wrong number of arguments for '" + c.Name + "' command"
	if c.Name == "exec" {
		return "EXECABORT Transaction discarded because of: " + msg
	}
	return "ERR " + msg
}

// cstr is b as printf("%.*s", max, b) prints it: up to the first NUL byte, and at most max bytes.
func cstr(b []byte, max int) []byte {
	for i, c := range b {
		if c == 0 {
			b = b[:i]
			break
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return b
}

func spaceNewlines(b []byte) []byte {
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return b
}

func bitNames(bits uint64, names []string) string {
	var sb strings.Builder
	for i, n := range names {
		if bits&(1<<i) != 0 {
			if sb.Len() > 0 {
				sb.WriteByte('|')
			}
			sb.WriteString(n)
			bits &^= 1 << i
		}
	}
	if bits != 0 {
		if sb.Len() > 0 {
			sb.WriteByte('|')
		}
		sb.WriteString("0x")
		sb.WriteString(strconv.FormatUint(bits, 16))
	}
	return sb.String()
}
