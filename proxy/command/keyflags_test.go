package command_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/proxy/command/internal/liveredis"
)

// keyflagsRequests are the requests of the key tests: getkeysCases, keyCases, random requests to every
// command with keys, and requests whose getkeys procedure sets flags.
func keyflagsRequests(n int) [][][]byte {
	var reqs [][][]byte
	for line := range strings.SplitSeq(strings.TrimSpace(getkeysCases), "\n") {
		var args [][]byte
		for _, a := range strings.Fields(line) {
			if a == "''" {
				a = ""
			}
			args = append(args, []byte(a))
		}
		reqs = append(reqs, args)
	}
	for _, tc := range keyCases {
		reqs = append(reqs, bs(tc.args...))
	}
	for _, r := range randomRequests(7, n) {
		reqs = append(reqs, r.args)
	}
	for _, line := range []string{
		"SET k v", "SET k v GET", "SET k v get", "SET k v EX 10 GET", "SET k v GETX", "SET k v\x00 GET\x00x",
		"BITFIELD k", "BITFIELD k GET u8 0", "BITFIELD k GET u8 0 OVERFLOW WRAP GET i4 2", "BITFIELD k SET u8 0 1",
		"BITFIELD k INCRBY u8 0 1", "BITFIELD k GET u8", "BITFIELD k OVERFLOW", "BITFIELD k foo",
		"SORT k", "SORT k STORE d", "SORT k BY w GET g LIMIT 0 1 STORE d1 STORE d2", "SORT k STORE",
		"SORT_RO k BY x", "MIGRATE h 1 k 0 5", "MIGRATE h 1 '' 0 5 KEYS a b c", "MIGRATE h 1 k 0 5 KEYS a",
		"MIGRATE h 1 '' 0 5 AUTH p KEYS a", "MIGRATE h 1 '' 0 5 AUTH2 u p KEYS a b",
		"GEORADIUS k 0 0 1 km STORE d", "GEORADIUS k 0 0 1 km STORE d STOREDIST e", "GEORADIUS k 0 0 1 km STORE",
		"GEORADIUSBYMEMBER k m 1 km STOREDIST d", "XREAD STREAMS a b 0 0", "XREAD COUNT 1 STREAMS a 0",
		"XREAD STREAMS a b 0", "XREADGROUP GROUP g c STREAMS a 0", "XREADGROUP GROUP g c NOACK STREAMS a b 0 0",
		"EVAL s 2 a b", "EVAL s +2 a b", "EVAL s 02 a b", "EVAL s ' 1' a", "EVAL_RO s 1 a", "FCALL f 1 a",
		"FCALL_RO f +1 a", "ZUNIONSTORE d 2 a b", "ZUNIONSTORE d +2 a b", "ZINTERSTORE d 1 a WEIGHTS 1",
		"ZDIFFSTORE d 02 a b", "ZUNION 2 a b", "ZUNION +2 a b", "SINTERCARD 2 a b", "SINTERCARD +1 a",
		"LMPOP 1 a LEFT", "LMPOP +1 a LEFT", "BLMPOP 0 1 a LEFT", "BLMPOP 0 +1 a LEFT", "ZMPOP +1 a MIN",
		"BZMPOP 0 +1 a MIN", "MSET a 1 b 2", "MGET a b c", "DEL a b", "SUNIONSTORE d a b", "COPY a b",
		"LMOVE a b LEFT RIGHT", "RENAME a b", "GETDEL a", "GETEX a", "SPUBLISH ch m", "SSUBSCRIBE a b",
	} {
		var args [][]byte
		for _, a := range strings.Split(line, " ") {
			if a == "''" {
				a = ""
			}
			args = append(args, []byte(a))
		}
		reqs = append(reqs, args)
	}
	return reqs
}

// TestKeysWithFlagsPositions checks that KeysWithFlags finds the positions KeyIndexes finds, in its order.
func TestKeysWithFlagsPositions(t *testing.T) {
	n := 0
	for _, args := range keyflagsRequests(200) {
		c, st := command.Lookup(args)
		if st != command.LookupOK {
			continue
		}
		n++
		idx, _ := command.KeyIndexes(c, args, nil)
		refs := command.KeysWithFlags(c, args, nil)
		pos := []int{}
		for _, r := range refs {
			pos = append(pos, r.Pos)
		}
		if idx == nil {
			idx = []int{}
		}
		if !slices.Equal(pos, idx) {
			t.Errorf("%q: KeysWithFlags positions %v, KeyIndexes %v", args, pos, idx)
		}
		// Appending to a non-empty dst keeps what is there.
		pre := []command.KeyRef{{Pos: 99}}
		if got := command.KeysWithFlags(c, args, pre); len(got) != 1+len(refs) || got[0].Pos != 99 ||
			!slices.Equal(got[1:], refs) {
			t.Errorf("%q: KeysWithFlags after one entry = %v, want %v after it", args, got, refs)
		}
	}
	if n < 1000 {
		t.Fatalf("only %d requests", n)
	}
}

func TestKeysWithFlagsExamples(t *testing.T) {
	tests := []struct {
		req  string
		want []command.KeyRef
	}{
		{"GET k", []command.KeyRef{{1, command.KeyRO | command.KeyAccess}}},
		{"SET k v", []command.KeyRef{{1, command.KeyOW | command.KeyUpdate}}},
		{"SET k v GET", []command.KeyRef{{1, command.KeyRW | command.KeyAccess | command.KeyUpdate}}},
		{"ZUNIONSTORE d 2 a b", []command.KeyRef{{1, command.KeyOW | command.KeyUpdate},
			{3, command.KeyRO | command.KeyAccess}, {4, command.KeyRO | command.KeyAccess}}},
		{"ZUNIONSTORE d +2 a b", []command.KeyRef{{3, 0}, {4, 0}, {1, 0}}},
		{"EVAL s 1 a", []command.KeyRef{{3, command.KeyRW | command.KeyAccess | command.KeyUpdate}}},
		{"EVAL s 0", nil},
		{"SORT k STORE d", []command.KeyRef{{1, command.KeyRO | command.KeyAccess}, {3, command.KeyOW | command.KeyUpdate}}},
		{"BITFIELD k GET u8 0", []command.KeyRef{{1, command.KeyRO | command.KeyAccess}}},
		{"BITFIELD k SET u8 0 1", []command.KeyRef{{1, command.KeyRW | command.KeyAccess | command.KeyUpdate}}},
		{"MIGRATE h 1 x 0 5 KEYS a b", nil},
		{"SPUBLISH ch m", nil},
		{"PING", nil},
	}
	for _, tc := range tests {
		args := bs(strings.Split(tc.req, " ")...)
		c, st := command.Lookup(args)
		if st != command.LookupOK {
			t.Fatalf("%s: %v", tc.req, st)
		}
		if got := command.KeysWithFlags(c, args, nil); !slices.Equal(got, tc.want) {
			t.Errorf("%s: KeysWithFlags = %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestKeysWithFlagsAllocs(t *testing.T) {
	reqs := [][][]byte{bs("GET", "k"), bs("MSET", "a", "1", "b", "2"), bs("EVAL", "s", "2", "a", "b"),
		bs("SET", "k", "v", "GET"), bs("SORT", "k", "STORE", "d"), bs("ZUNIONSTORE", "d", "+2", "a", "b")}
	var cmds []*command.Command
	for _, r := range reqs {
		c, _ := command.Lookup(r)
		cmds = append(cmds, c)
	}
	dst := make([]command.KeyRef, 0, 8)
	n := testing.AllocsPerRun(1000, func() {
		for i, r := range reqs {
			dst = command.KeysWithFlags(cmds[i], r, dst[:0])
		}
	})
	if n != 0 {
		t.Errorf("KeysWithFlags: %v allocations, want 0", n)
	}
	// A stack buffer does not escape.
	n = testing.AllocsPerRun(1000, func() {
		var buf [4]command.KeyRef
		k := command.KeysWithFlags(cmds[1], reqs[1], buf[:0])
		if len(k) != 2 {
			panic("keys")
		}
	})
	if n != 0 {
		t.Errorf("KeysWithFlags into a stack buffer: %v allocations, want 0", n)
	}
}

// TestKeysWithFlagsMatchServer compares KeysWithFlags with COMMAND GETKEYSANDFLAGS, which reports the keys
// getKeysFromCommandWithSpecs finds and their flags (by name: the keys are compared in order).
func TestKeysWithFlagsMatchServer(t *testing.T) {
	srv := startServer(t)
	if !srv.pinned {
		t.Skip("flags are compared against Redis " + command.RedisVersion + " only; server is " + srv.version)
	}
	n := 150
	if testing.Short() {
		n = 20
	}
	reqs := slices.DeleteFunc(keyflagsRequests(n), func(args [][]byte) bool {
		_, st := command.Lookup(args)
		return len(args) < 2 || st != command.LookupOK
	})
	c := srv.Conn
	const batch = 500
	failures := 0
	for start := 0; start < len(reqs); start += batch {
		end := min(start+batch, len(reqs))
		for _, args := range reqs[start:end] {
			c.Send(append(bs("COMMAND", "GETKEYSANDFLAGS"), args...)...)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, args := range reqs[start:end] {
			v, err := c.Receive()
			if err != nil {
				t.Fatal(err)
			}
			cmd, _ := command.Lookup(args)
			var got []string
			for _, r := range command.KeysWithFlags(cmd, args, nil) {
				got = append(got, string(args[r.Pos])+" "+flagSet(strings.Split(r.Flags.String(), "|")))
			}
			var want []string
			switch v := v.(type) {
			case liveredis.Error:
			case []any:
				for _, e := range v {
					kf := e.([]any)
					var names []string
					for _, f := range kf[1].([]any) {
						names = append(names, f.(string))
					}
					want = append(want, kf[0].(string)+" "+flagSet(names))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q: KeysWithFlags %q; GETKEYSANDFLAGS %q", args, got, want)
				if failures++; failures > 30 {
					t.Fatal("too many failures")
				}
			}
		}
	}
	t.Logf("%d requests compared", len(reqs))
}

func flagSet(names []string) string {
	names = slices.DeleteFunc(slices.Clone(names), func(s string) bool { return s == "" })
	slices.Sort(names)
	return "[" + strings.Join(names, ",") + "]"
}
