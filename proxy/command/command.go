// Package command is the Redis command table: arity, flags and where the keys are, for every command and
// subcommand of the Redis version it was generated from (table_gen.go, made by internal/gen from a real
// server's COMMAND reply; run generate.sh to remake it).
package command

import (
	"strings"
)

//go:generate ./generate.sh

// Flag is a command flag from COMMAND's reply.
type Flag uint32

const (
	Write Flag = 1 << iota
	ReadOnly
	DenyOOM
	Module
	Admin
	PubSub
	NoScript
	Blocking
	Loading
	Stale
	SkipMonitor
	SkipSlowlog
	Fast
	NoAuth
	MayReplicate
	Sentinel
	OnlySentinel
	NoMandatoryKeys
	Protected
	ModuleGetKeys
	ModuleNoCluster
	NoAsyncLoading
	NoMulti
	MovableKeys
	AllowBusy
	Asking
)

// Begin-search and find-keys kinds of a key specification (Redis 7 key specs).
const (
	BSUnknown = 0 // the keys cannot be found from the spec alone
	FKUnknown = 0
	BSIndex   = 1
	BSKeyword = 2
	FKRange   = 1
	FKKeynum  = 2
)

// KeySpec is one Redis 7 key specification: where the search for keys begins, and how keys are found from
// there.
type KeySpec struct {
	BS          int    // BSIndex, BSKeyword or BSUnknown
	BSIndex     int    // BSIndex: the first key's argument index
	BSKeyword   string // BSKeyword: the keyword after which keys start
	BSStartFrom int    // BSKeyword: where the keyword search starts; negative counts from the end
	FK          int    // FKRange, FKKeynum or FKUnknown
	LastKey     int    // FKRange: last key relative to the first; negative counts from the end
	KeyStep     int    // both: distance between keys
	Limit       int    // FKRange with LastKey -1: keys are 1/Limit of the remaining arguments
	KeynumIdx   int    // FKKeynum: index of the key count, relative to the begin-search result
	FirstKey    int    // FKKeynum: the first key, relative to the begin-search result
	Incomplete  bool   // the spec may miss keys; a hand-written rule completes it
}

// Command describes one command or subcommand.
type Command struct {
	Name     string // lower case; subcommands as "client|setname"
	Arity    int    // Redis arity: n exact, -n at least n
	Flags    Flag
	FirstKey int // legacy key range
	LastKey  int
	Step     int
	KeySpecs []KeySpec
	Subs     []*Command // subcommands of a container, as generated

	Index int                 // dense index over every command and subcommand, for per-command tables
	subs  map[string]*Command // by lower-case subcommand name
}

// Has tells whether c has flag f.
func (c *Command) Has(f Flag) bool { return c.Flags&f != 0 }

// Status is the outcome of Lookup.
type Status int

const (
	OK                Status = iota
	Unknown                  // no such command
	UnknownSubcommand        // a container whose subcommand does not exist
	WrongArity               // the command exists; the argument count is wrong for it
)

var (
	byName = map[string]*Command{}
	all    []*Command
)

func init() {
	for _, c := range table {
		byName[c.Name] = c
		c.Index = len(all)
		all = append(all, c)
		if len(c.Subs) > 0 {
			c.subs = make(map[string]*Command, len(c.Subs))
			for _, s := range c.Subs {
				_, sub, _ := strings.Cut(s.Name, "|")
				c.subs[sub] = s
				s.Index = len(all)
				all = append(all, s)
			}
		}
	}
}

// All returns every command and subcommand, by Index.
func All() []*Command { return all }

// Count is len(All()).
func Count() int { return len(all) }

// maxName is longer than any command or subcommand name.
const maxName = 32

// Lookup finds the command of a request, as Redis's processCommand does. It does not allocate.
func Lookup(args [][]byte) (*Command, Status) {
	var buf [maxName]byte
	name, ok := lower(buf[:0], args[0])
	if !ok {
		return nil, Unknown
	}
	c := byName[string(name)]
	if c == nil {
		return nil, Unknown
	}
	if c.subs != nil && len(args) >= 2 {
		sub, ok := lower(buf[:0], args[1])
		s := c.subs[string(sub)]
		if !ok || s == nil {
			return c, UnknownSubcommand
		}
		c = s
	}
	if (c.Arity > 0 && c.Arity != len(args)) || len(args) < -c.Arity {
		return c, WrongArity
	}
	return c, OK
}

func lower(dst, b []byte) ([]byte, bool) {
	if len(b) > maxName {
		return nil, false
	}
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// UnknownCommandError is Redis's reply text (without "-" and CRLF) for an unknown command: the arguments are
// quoted until 128 bytes of them are shown.
func UnknownCommandError(args [][]byte) string {
	var shown []byte
	for _, a := range args[1:] {
		if len(shown) >= 128 {
			break
		}
		shown = append(shown, '\'')
		shown = append(shown, trunc(a, 128-(len(shown)-1))...)
		shown = append(shown, "' "...)
	}
	return "ERR unknown command '" + string(trunc(args[0], 128)) + "', with args beginning with: " + string(shown)
}

// UnknownSubcommandError is Redis's reply text for a container command's unknown subcommand.
func UnknownSubcommandError(args [][]byte) string {
	return "ERR unknown subcommand '" + string(trunc(args[1], 128)) + "'. Try " +
		strings.ToUpper(string(args[0])) + " HELP."
}

// ArityError is Redis's reply text for a wrong argument count.
func ArityError(c *Command) string {
	return "ERR wrong number of arguments for '" + c.Name + "' command"
}

func trunc(b []byte, n int) []byte {
	if n < 0 {
		n = 0
	}
	if len(b) > n {
		return b[:n]
	}
	return b
}
