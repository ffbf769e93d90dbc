package command_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/proxy/command"
)

func bs(args ...string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

func TestLookup(t *testing.T) {
	tests := []struct {
		args []string
		name string // "" for nil
		st   command.Status
	}{
		{[]string{"GET", "k"}, "get", command.LookupOK},
		{[]string{"gEt", "k"}, "get", command.LookupOK},
		{[]string{"get"}, "get", command.WrongArity},
		{[]string{"get", "a", "b"}, "get", command.WrongArity},
		{[]string{"mget", "a", "b", "c"}, "mget", command.LookupOK},
		{[]string{"MGET"}, "mget", command.WrongArity},
		{[]string{"set", "k", "v", "EX", "10"}, "set", command.LookupOK},
		{[]string{"client", "setname", "x"}, "client|setname", command.LookupOK},
		{[]string{"CLIENT", "SetName", "x"}, "client|setname", command.LookupOK},
		{[]string{"CLIENT", "SETNAME"}, "client|setname", command.WrongArity},
		{[]string{"client", "setname", "x", "y"}, "client|setname", command.WrongArity},
		{[]string{"client", "nosuch"}, "client", command.UnknownSubcommand},
		{[]string{"client", "nosuch", "a", "b"}, "client", command.UnknownSubcommand},
		{[]string{"client", strings.Repeat("x", 100)}, "client", command.UnknownSubcommand},
		{[]string{"client"}, "client", command.WrongArity},
		{[]string{"object"}, "object", command.WrongArity},
		{[]string{"OBJECT", "encoding", "k"}, "object|encoding", command.LookupOK},
		{[]string{"config", "get", "maxmemory"}, "config|get", command.LookupOK},
		{[]string{"xinfo", "stream", "s", "full"}, "xinfo|stream", command.LookupOK},
		{[]string{"memory", "usage", "k"}, "memory|usage", command.LookupOK},
		{[]string{"command"}, "command", command.LookupOK}, // COMMAND is a container that may stand alone
		{[]string{"command", "getkeys", "get", "k"}, "command|getkeys", command.LookupOK},
		{[]string{"client|setname", "x"}, "", command.Unknown}, // full names are not command names
		{[]string{"nosuch", "a"}, "", command.Unknown},
		{[]string{"get\x00", "k"}, "", command.Unknown},
		{[]string{""}, "", command.Unknown},
		{[]string{strings.Repeat("x", 100)}, "", command.Unknown},
		{[]string{"GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"}, "georadiusbymember_ro", command.LookupOK},
		{[]string{"ping"}, "ping", command.LookupOK},
		{[]string{"PING", "hello"}, "ping", command.LookupOK},
		{[]string{"ping", "a", "b"}, "ping", command.LookupOK}, // arity -1: PING checks the rest itself
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.args), func(t *testing.T) {
			c, st := command.Lookup(bs(tc.args...))
			name := ""
			if c != nil {
				name = c.Name
			}
			if name != tc.name || st != tc.st {
				t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.args, name, st, tc.name, tc.st)
			}
		})
	}
	if c, st := command.Lookup(nil); c != nil || st != command.Unknown {
		t.Errorf("Lookup(nil) = %v, %v; want nil, Unknown", c, st)
	}
}

func TestErrorTexts(t *testing.T) {
	get, _ := command.Lookup(bs("get", "k"))
	setname, _ := command.Lookup(bs("client", "setname", "x"))
	exec, _ := command.Lookup(bs("exec"))
	long := strings.Repeat("x", 200)
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"unknown", command.UnknownCommandError(bs("foo", "a", "b")),
			"ERR unknown command 'foo', with args beginning with: 'a' 'b' "},
		{"unknown no args", command.UnknownCommandError(bs("foo")),
			"ERR unknown command 'foo', with args beginning with: "},
		{"unknown long name", command.UnknownCommandError(bs(long)),
			"ERR unknown command '" + long[:128] + "', with args beginning with: "},
		{"unknown long args", command.UnknownCommandError(bs("foo", strings.Repeat("a", 110), "bcdefghijklmnopqrstuvwxyz", "c")),
			"ERR unknown command 'foo', with args beginning with: '" + strings.Repeat("a", 110) + "' 'bcdefghijklmnop' "},
		{"unknown NUL and CRLF", command.UnknownCommandError(bs("fo\r\no", "a\x00b", "c\nd")),
			"ERR unknown command 'fo  o', with args beginning with: 'a' 'c d' "},
		{"unknown subcommand", command.UnknownSubcommandError(bs("client", "xyz")),
			"ERR unknown subcommand 'xyz'. Try CLIENT HELP."},
		{"unknown subcommand case", command.UnknownSubcommandError(bs("cLiEnT", "X\r\nY")),
			"ERR unknown subcommand 'X  Y'. Try CLIENT HELP."},
		{"unknown subcommand long", command.UnknownSubcommandError(bs("config", long)),
			"ERR unknown subcommand '" + long[:128] + "'. Try CONFIG HELP."},
		{"arity", command.ArityError(get), "ERR wrong number of arguments for 'get' command"},
		{"arity subcommand", command.ArityError(setname), "ERR wrong number of arguments for 'client|setname' command"},
		{"arity exec", command.ArityError(exec), "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("\n got  %q\n want %q", tc.got, tc.want)
			}
		})
	}
}

func TestTableShape(t *testing.T) {
	all := command.All()
	if len(all) != command.Count() || len(all) == 0 {
		t.Fatalf("len(All()) = %d, Count() = %d", len(all), command.Count())
	}
	containers := map[string]bool{}
	for i, c := range all {
		if c.Index != i {
			t.Errorf("%s: Index %d at position %d", c.Name, c.Index, i)
		}
		if c.Name != strings.ToLower(c.Name) {
			t.Errorf("%s: name not in lower case", c.Name)
		}
		if parent, sub, ok := strings.Cut(c.Name, "|"); ok {
			if c.Parent == nil || c.Parent.Name != parent || c.Parent.Subcommands[sub] != c {
				t.Errorf("%s: not linked to its container", c.Name)
			}
			if c.Subcommands != nil {
				t.Errorf("%s: a subcommand with subcommands", c.Name)
			}
		} else {
			if c.Parent != nil {
				t.Errorf("%s: top-level command with a parent", c.Name)
			}
			if c.Subcommands != nil {
				containers[c.Name] = true
			}
		}
	}
	// The containers the proxy cares about, and that every container has HELP.
	for _, name := range []string{"acl", "client", "cluster", "command", "config", "function",
		"latency", "memory", "module", "object", "pubsub", "script", "slowlog", "xgroup", "xinfo"} {
		if !containers[name] {
			t.Errorf("%s is not a container", name)
		}
	}
	for name := range containers {
		c, _ := command.Lookup(bs(name))
		if c.Subcommands["help"] == nil {
			t.Errorf("%s has no HELP subcommand", name)
		}
	}
	if !slices.IsSortedFunc(all, func(a, b *command.Command) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("All() is not sorted by name")
	}
}

func TestFlagStrings(t *testing.T) {
	c, _ := command.Lookup(bs("get", "k"))
	if got := c.Flags.String(); got != "readonly|fast" {
		t.Errorf("GET flags %q", got)
	}
	if got := c.Categories.String(); got != "@read|@string|@fast" {
		t.Errorf("GET categories %q", got)
	}
	if got := c.KeySpecs[0].Flags.String(); got != "RO|access" {
		t.Errorf("GET key spec flags %q", got)
	}
	if !c.Has(command.ReadOnly|command.Fast) || c.Has(command.ReadOnly|command.Write) {
		t.Errorf("Has: GET flags %v", c.Flags)
	}
}

// keyCases are requests with the key positions COMMAND GETKEYS gives on the table's Redis version,
// command.RedisVersion (the live test checks them against a server too). ok is KeyIndexes's second result.
var keyCases = []struct {
	args []string
	keys []int
	ok   bool
}{
	{[]string{"GET", "k"}, []int{1}, true},
	{[]string{"MGET", "a", "b", "c"}, []int{1, 2, 3}, true},
	{[]string{"MSET", "a", "1", "b", "2"}, []int{1, 3}, true},
	{[]string{"SET", "k", "v", "GET"}, []int{1}, true},
	{[]string{"PING"}, nil, true},
	{[]string{"SPUBLISH", "ch", "m"}, nil, true},
	{[]string{"EVAL", "s", "2", "a", "b", "c"}, []int{3, 4}, true},
	{[]string{"EVAL", "s", "0"}, nil, true},
	{[]string{"EVAL", "s", "5", "a"}, nil, false},
	{[]string{"EVAL", "s", "2abc", "a", "b"}, []int{3, 4}, true}, // atoi in evalGetKeys
	{[]string{"EVAL", "s", "4294967297", "a"}, []int{3}, true},   // (int)numkeys in the key spec
	{[]string{"ZUNIONSTORE", "d", "2", "a", "b"}, []int{1, 3, 4}, true},
	{[]string{"ZUNIONSTORE", "d", "02", "a", "b"}, []int{3, 4, 1}, true}, // zunionInterDiffStoreGetKeys
	{[]string{"ZUNIONSTORE", "d", "0", "a"}, nil, false},
	{[]string{"XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"}, []int{4, 5}, true},
	{[]string{"XREAD", "COUNT", "1", "a", "0"}, nil, false},
	{[]string{"SORT", "k", "BY", "x", "STORE", "d"}, []int{1, 5}, true},
	{[]string{"SORT", "k", "store", "d", "STORE", "e"}, []int{1, 5}, true},
	{[]string{"MIGRATE", "h", "p", "", "0", "5000", "KEYS", "a", "b"}, []int{7, 8}, true},
	{[]string{"MIGRATE", "h", "p", "k", "0", "5000", "KEYS", "a", "b"}, nil, false},
	{[]string{"MIGRATE", "h", "p", "k", "0", "5000"}, []int{3}, true},
	{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"}, []int{1, 7}, true},
	{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE"}, []int{1}, true},
	{[]string{"BLMPOP", "0", "2", "a", "b", "LEFT"}, []int{3, 4}, true},
	{[]string{"OBJECT", "ENCODING", "k"}, []int{2}, true},
}

func TestKeyIndexes(t *testing.T) {
	for _, tc := range keyCases {
		t.Run(fmt.Sprintf("%q", tc.args), func(t *testing.T) {
			args := bs(tc.args...)
			c, st := command.Lookup(args)
			if st != command.LookupOK {
				t.Fatalf("Lookup: %v", st)
			}
			got, ok := command.KeyIndexes(c, args, nil)
			if !slices.Equal(got, tc.keys) || ok != tc.ok {
				t.Errorf("KeyIndexes = %v, %v; want %v, %v", got, ok, tc.keys, tc.ok)
			}
			// Appends to what dst holds, and leaves it alone when there are no keys.
			got, _ = command.KeyIndexes(c, args, []int{-1})
			if !slices.Equal(got, append([]int{-1}, tc.keys...)) {
				t.Errorf("KeyIndexes(dst=[-1]) = %v", got)
			}
		})
	}
}

// TestKeyIndexesVersusCluster pins the requests for which COMMAND GETKEYS (KeyIndexes) and Redis Cluster's
// routing (ClusterKeyIndexes) disagree; both sides are checked against servers in the live tests.
func TestKeyIndexesVersusCluster(t *testing.T) {
	tests := []struct {
		args            []string
		getkeys, routed []int
	}{
		{[]string{"GET", "k"}, []int{1}, []int{1}},
		{[]string{"MSET", "a", "1", "b", "2"}, []int{1, 3}, []int{1, 3}},
		{[]string{"ZUNIONSTORE", "d", "2", "a", "b"}, []int{1, 3, 4}, []int{3, 4, 1}},
		{[]string{"XREADGROUP", "GROUP", "streams", "c", "STREAMS", "s", ">"}, []int{5}, []int{5}},
		{[]string{"XREAD", "COUNT", "streams", "STREAMS", "a", "0"}, []int{3}, []int{4}}, // malformed
		{[]string{"XREAD", "STREAMS", "a", "b", "0"}, []int{2}, nil},
		{[]string{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d", "STOREDIST", "e"}, []int{1, 7, 9}, []int{1, 9}},
		{[]string{"SPUBLISH", "ch", "m"}, nil, []int{1}},
		{[]string{"SSUBSCRIBE", "a", "b"}, nil, []int{1, 2}},
		{[]string{"EVAL", "s", "2abc", "a", "b"}, []int{3, 4}, []int{3, 4}},
		{[]string{"PING"}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.args), func(t *testing.T) {
			args := bs(tc.args...)
			c, _ := command.Lookup(args)
			if got, _ := command.KeyIndexes(c, args, nil); !slices.Equal(got, tc.getkeys) {
				t.Errorf("KeyIndexes = %v, want %v", got, tc.getkeys)
			}
			if got := command.ClusterKeyIndexes(c, args, nil); !slices.Equal(got, tc.routed) {
				t.Errorf("ClusterKeyIndexes = %v, want %v", got, tc.routed)
			}
		})
	}
}

func TestHotPathAllocs(t *testing.T) {
	get := bs("GET", "k")
	mget := bs("MGET", "a", "b", "c")
	dst := make([]int, 0, 8)
	n := testing.AllocsPerRun(1000, func() {
		c, _ := command.Lookup(get)
		dst, _ = command.KeyIndexes(c, get, dst[:0])
		dst = command.ClusterKeyIndexes(c, get, dst[:0])
		c, _ = command.Lookup(mget)
		dst, _ = command.KeyIndexes(c, mget, dst[:0])
		dst = command.ClusterKeyIndexes(c, mget, dst[:0])
	})
	if n != 0 {
		t.Errorf("Lookup + KeyIndexes of GET and MGET: %v allocations, want 0", n)
	}
	setname := bs("client", "SETNAME", "x")
	evalArgs := bs("EVAL", "s", "2", "a", "b")
	n = testing.AllocsPerRun(1000, func() {
		command.Lookup(setname)
		c, _ := command.Lookup(evalArgs)
		dst, _ = command.KeyIndexes(c, evalArgs, dst[:0])
	})
	if n != 0 {
		t.Errorf("Lookup of a subcommand, EVAL keys: %v allocations, want 0", n)
	}
}

func BenchmarkLookupGet(b *testing.B) {
	args := bs("GET", "key")
	b.ReportAllocs()
	for b.Loop() {
		command.Lookup(args)
	}
}

func BenchmarkLookupSubcommand(b *testing.B) {
	args := bs("CLIENT", "SETNAME", "x")
	b.ReportAllocs()
	for b.Loop() {
		command.Lookup(args)
	}
}

func BenchmarkKeyIndexesMGET(b *testing.B) {
	args := bs("MGET")
	for i := range 10 {
		args = append(args, fmt.Appendf(nil, "key:%d", i))
	}
	c, _ := command.Lookup(args)
	dst := make([]int, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = command.KeyIndexes(c, args, dst[:0])
	}
}

func BenchmarkKeyIndexesEVAL(b *testing.B) {
	args := bs("EVALSHA", "0123456789abcdef0123456789abcdef01234567", "2", "a", "b", "x")
	c, _ := command.Lookup(args)
	dst := make([]int, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = command.KeyIndexes(c, args, dst[:0])
	}
}
