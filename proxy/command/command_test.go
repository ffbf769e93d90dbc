package command_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/internal/redistest"
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
		name string
		st   command.Status
	}{
		{[]string{"GET", "k"}, "get", command.OK},
		{[]string{"gEt", "k"}, "get", command.OK},
		{[]string{"get"}, "get", command.WrongArity},
		{[]string{"get", "a", "b"}, "get", command.WrongArity},
		{[]string{"mget", "a", "b", "c"}, "mget", command.OK},
		{[]string{"client", "setname", "x"}, "client|setname", command.OK},
		{[]string{"CLIENT", "SETNAME"}, "client|setname", command.WrongArity},
		{[]string{"client", "nosuch"}, "client", command.UnknownSubcommand},
		{[]string{"client"}, "client", command.WrongArity},
		{[]string{"nosuch", "a"}, "", command.Unknown},
		{[]string{strings.Repeat("x", 100)}, "", command.Unknown},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
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
}

func TestHotPathAllocs(t *testing.T) {
	get := bs("GET", "k")
	mget := bs("MGET", "a", "b", "c")
	dst := make([]int, 0, 8)
	n := testing.AllocsPerRun(1000, func() {
		c, _ := command.Lookup(get)
		dst, _ = command.KeyIndexes(c, get, dst[:0])
		c, _ = command.Lookup(mget)
		dst, _ = command.KeyIndexes(c, mget, dst[:0])
	})
	if n != 0 {
		t.Errorf("Lookup + KeyIndexes allocate %v times", n)
	}
}

// TestTableMatchesServer compares the whole table, key positions of many invocations, and the error texts
// with a live redis-server.
func TestTableMatchesServer(t *testing.T) {
	srv := redistest.StartServer(t)
	ctx := context.Background()
	c := srv.Client(t)

	t.Run("COMMAND INFO", func(t *testing.T) {
		infos, err := c.Command(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for name, info := range infos {
			cmd, _ := command.Lookup(bs(strings.Split(name, "|")...))
			if cmd == nil || (cmd.Name != name && !strings.Contains(name, "|")) {
				t.Errorf("%s: missing from the table", name)
				continue
			}
			if int(info.Arity) != cmd.Arity || int(info.FirstKeyPos) != cmd.FirstKey ||
				int(info.LastKeyPos) != cmd.LastKey || int(info.StepCount) != cmd.Step {
				t.Errorf("%s: table arity/keys %d %d %d %d, server %d %d %d %d", name, cmd.Arity, cmd.FirstKey,
					cmd.LastKey, cmd.Step, info.Arity, info.FirstKeyPos, info.LastKeyPos, info.StepCount)
			}
			if got, want := cmd.Has(command.ReadOnly), info.ReadOnly; got != want {
				t.Errorf("%s: readonly %v, server %v", name, got, want)
			}
		}
		if len(infos) != len(tableTopLevel()) {
			t.Errorf("server has %d commands, table %d", len(infos), len(tableTopLevel()))
		}
	})

	t.Run("COMMAND GETKEYS", func(t *testing.T) {
		for _, line := range strings.Split(strings.TrimSpace(getkeysCases), "\n") {
			args := strings.Fields(line)
			cmd, st := command.Lookup(bs(args...))
			if st != command.OK {
				t.Errorf("%s: lookup status %v", line, st)
				continue
			}
			idx, ok := command.KeyIndexes(cmd, bs(args...), nil)
			var got []string
			for _, i := range idx {
				got = append(got, args[i])
			}
			want, err := c.Do(ctx, append([]any{"COMMAND", "GETKEYS"}, toAny(args)...)...).StringSlice()
			if err != nil {
				if ok && len(idx) > 0 {
					t.Errorf("%s: server says %v, table finds %q", line, err, got)
				}
				continue
			}
			if !ok || strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s: table %q (ok %v), server %q", line, got, ok, want)
			}
		}
	})

	t.Run("error texts", func(t *testing.T) {
		for _, args := range [][]string{
			{"foo", "a", "b"},
			{"foo"},
			{"foo", strings.Repeat("x", 200), "y"},
			{strings.Repeat("y", 30), "a"},
			{"get"},
			{"client", "foo"},
			{"client", "setname"},
			{"object"},
			{"config", "nosuch", "x"},
		} {
			err := c.Do(ctx, toAny(args)...).Err()
			if err == nil {
				t.Fatalf("%q: no error from the server", args)
			}
			var got string
			cmd, st := command.Lookup(bs(args...))
			switch st {
			case command.Unknown:
				got = command.UnknownCommandError(bs(args...))
			case command.UnknownSubcommand:
				got = command.UnknownSubcommandError(bs(args...))
			case command.WrongArity:
				got = command.ArityError(cmd)
			}
			if got != err.Error() {
				t.Errorf("%q:\n table  %q\n server %q", args, got, err.Error())
			}
		}
	})
}

func tableTopLevel() []*command.Command {
	var out []*command.Command
	for _, c := range command.All() {
		if !strings.Contains(c.Name, "|") {
			out = append(out, c)
		}
	}
	return out
}

func toAny(args []string) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// SPUBLISH is left out: its channel is a not-key key spec, which COMMAND GETKEYS hides but which routes it
// to the shard of the channel's slot, as the proxy does.
const getkeysCases = `
SET k v
SET k v EX 10 GET
GET k
MSET a 1 b 2 c 3
MGET a b c d e
DEL a b c
EXISTS a a b
RENAME a b
RENAMENX a b
SMOVE a b m
SINTERSTORE d a b c
SUNION a b
BLPOP k1 k2 0
BRPOPLPUSH a b 0
BLMOVE a b LEFT RIGHT 0
LMOVE a b LEFT RIGHT
XREAD COUNT 2 STREAMS a b 0 0
XREAD STREAMS a 0
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c COUNT 1 BLOCK 10 NOACK STREAMS s t > >
EVAL return 2 a b c
EVAL return 0
EVALSHA abc 1 k v
EVAL_RO return 1 k
FCALL f 2 a b x
ZUNIONSTORE d 2 a b WEIGHTS 1 2
ZINTERSTORE d 1 a
ZUNION 2 a b
ZDIFF 2 a b WITHSCORES
ZDIFFSTORE d 2 a b
ZINTERCARD 2 a b LIMIT 1
ZRANGESTORE d s 0 -1
SORT k BY x STORE d
SORT k LIMIT 0 1 GET # STORE d
SORT k
SORT_RO k BY x
MIGRATE h 6379 k 0 5000
MIGRATE h 6379 "" 0 5000 KEYS a b
MIGRATE h 6379 "" 0 5000 COPY REPLACE AUTH pw KEYS a b c
GEORADIUS k 0 0 1 km STORE d
GEORADIUS k 0 0 1 km STOREDIST d
GEORADIUSBYMEMBER k m 1 km STORE d
GEORADIUS_RO k 0 0 1 km
GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km
OBJECT ENCODING k
OBJECT FREQ k
XINFO STREAM k
XINFO GROUPS k
MEMORY USAGE k
LMPOP 2 a b LEFT
BLMPOP 0 2 a b LEFT COUNT 2
ZMPOP 1 a MIN
BZMPOP 0 2 a b MAX
SINTERCARD 2 a b
BITOP AND d a b c
BITCOUNT k
PFMERGE d a b
PFCOUNT a b
LCS a b
COPY a b
GETEX k PERSIST
GETDEL k
HSET h f v
HMGET h f g
SADD s a b
ZADD z 1 a
XADD s * f v
XGROUP CREATE s g $
XACK s g 1-1
TOUCH a b c
UNLINK a b
WATCH a b
DUMP k
RESTORE k 0 x
EXPIRE k 10
SETRANGE k 0 x
GETRANGE k 0 1
PUBLISH ch msg
TYPE k
`

func BenchmarkLookupGet(b *testing.B) {
	args := bs("GET", "key")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		command.Lookup(args)
	}
}

func BenchmarkKeyIndexesMGET(b *testing.B) {
	var args [][]byte
	args = append(args, []byte("MGET"))
	for i := 0; i < 10; i++ {
		args = append(args, []byte(fmt.Sprintf("key:%d", i)))
	}
	c, _ := command.Lookup(args)
	dst := make([]int, 0, 16)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst, _ = command.KeyIndexes(c, args, dst[:0])
	}
}
