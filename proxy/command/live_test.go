package command_test

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/proxy/command/internal/liveredis"
)

// The live tests run the server binary named by $SLOTPROXY_REDIS_SERVER (a path, or a name looked up in
// PATH), redis-server by default. They adapt to the version they find:
//
//   - A Redis whose redis_version is command.RedisVersion (the server the table was generated from) is
//     compared exactly: every field of COMMAND, every command, every error text.
//   - Any other server (newer, older, or Valkey, which reports the Redis version it is compatible with as
//     redis_version and its own as valkey_version) is compared where the table must agree with it for the
//     proxy to route correctly: for every command both know, arity, the legacy key range, the key specs
//     with the flags that key finding reads (routingSpecFlags), the command flags routing reads
//     (routingFlags), COMMAND GETKEYS's keys, the cluster's slot checks, and the kinds of the errors the
//     proxy answers itself. ACL categories, tips, other command and key spec flags, error texts and the
//     commands only one side has are logged (go test -v shows them), not failed.
const serverEnv = "SLOTPROXY_REDIS_SERVER"

// routingFlags are the command flags that the proxy and this package read, and so must match any server
// the proxy fronts: ReadOnly (a request may go to a replica, and may be resent: proxy/dispatch.go and
// backend/pool.go), Blocking (blocking commands are refused), Admin (an admin command without keys is
// refused), MovableKeys (Redis finds the keys with a getkeys procedure, which the table must have: keys.go),
// NoMandatoryKeys (KeyIndexes's ok for a command that may have no keys).
const routingFlags = command.ReadOnly | command.Blocking | command.Admin | command.MovableKeys | command.NoMandatoryKeys

// routingSpecFlags are the key spec flags that key finding reads (keys.go, and useSpecs in command.go); the
// others (RO, RW, OW, RM, access, update, insert, delete) say what the command does with the key.
const routingSpecFlags = command.KeyNotKey | command.KeyIncomplete | command.KeyVariableFlags

// keyFinding is specs with only routingSpecFlags: what finds the keys.
func keyFinding(specs []command.KeySpec) []command.KeySpec {
	out := slices.Clone(specs)
	for i := range out {
		out[i].Flags &= routingSpecFlags
	}
	return out
}

// liveServer is a throwaway server (free port, no persistence), killed by PID when the test ends, with a
// connection to it and what INFO and COMMAND say about it.
type liveServer struct {
	*liveredis.Conn
	version string           // "redis 7.2.4", or "valkey 8.0.1 (redis_version 7.2.4)"
	pinned  bool             // a Redis of command.RedisVersion: compare exactly
	cmds    map[string][]any // COMMAND's entries by full name ("get", "client|setname")
	names   []string         // the keys of cmds, sorted
}

// serverBin is $SLOTPROXY_REDIS_SERVER, or redis-server. The test is skipped if redis-server is not in PATH,
// and fails if a binary named by the variable cannot be found.
func serverBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(serverEnv)
	if bin == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Skip("redis-server is not in PATH (" + serverEnv + " names another server binary)")
		}
		return "redis-server"
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("%s=%s: %v", serverEnv, bin, err)
	}
	return bin
}

// startServer starts the server with the options extra ("--cluster-enabled", "yes", ...), connects to it
// and reads its version and COMMAND.
func startServer(t *testing.T, extra ...string) *liveServer {
	t.Helper()
	srv, err := liveredis.Start(serverBin(t), t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := liveredis.Dial(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &liveServer{Conn: c, cmds: map[string][]any{}}

	v, err := c.Do("INFO", "server")
	if err != nil {
		t.Fatal(err)
	}
	info := map[string]string{}
	for line := range strings.SplitSeq(v.(string), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			info[k] = v
		}
	}
	redisVersion := info["redis_version"]
	if redisVersion == "" {
		t.Fatalf("INFO server has no redis_version:\n%s", v)
	}
	switch {
	case info["valkey_version"] != "":
		s.version = "valkey " + info["valkey_version"] + " (redis_version " + redisVersion + ")"
	case info["server_name"] != "" && info["server_name"] != "redis":
		s.version = info["server_name"] + " (redis_version " + redisVersion + ")"
	default:
		s.version = "redis " + redisVersion
		s.pinned = redisVersion == command.RedisVersion
	}

	reply, err := c.Do("COMMAND")
	if err != nil {
		t.Fatal(err)
	}
	var add func(v any)
	add = func(v any) {
		e := v.([]any)
		if len(e) != 10 {
			t.Fatalf("COMMAND entry with %d fields, want 10 (the Redis 7 form): %v", len(e), e)
		}
		name := strings.ToLower(e[0].(string))
		s.cmds[name] = e
		s.names = append(s.names, name)
		for _, sub := range e[9].([]any) {
			add(sub)
		}
	}
	for _, e := range reply.([]any) {
		add(e)
	}
	slices.Sort(s.names)
	if s.pinned {
		t.Logf("server %s, the table's version: compared exactly", s.version)
	} else {
		t.Logf("server %s, table from redis %s: compared where routing needs it to match, other differences logged",
			s.version, command.RedisVersion)
	}
	return s
}

// has tells whether the server knows the command or subcommand of the table.
func (s *liveServer) has(c *command.Command) bool { return s.cmds[c.Name] != nil }

// widens tells whether every argument count arity a accepts, arity b accepts too (a negative arity is a
// minimum).
func widens(a, b int) bool {
	if b >= 0 {
		return a == b
	}
	if a >= 0 {
		return a >= -b
	}
	return -a >= -b
}

// serverFlags maps COMMAND's flag names to the table's flags.
var serverFlags = func() map[string]command.Flag {
	m := map[string]command.Flag{}
	for i := range 32 {
		f := command.Flag(1) << i
		if n := f.String(); !strings.HasPrefix(n, "0x") {
			m[n] = f
		}
	}
	return m
}()

// TestTableMatchesServer compares every command and subcommand of the table with the live COMMAND reply:
// all of it against the table's own version, what routing reads against any other (see serverEnv).
func TestTableMatchesServer(t *testing.T) {
	srv := startServer(t)
	// doc reports a difference in what routing does not read: a failure on the table's version, a note on
	// another.
	doc := t.Errorf
	if !srv.pinned {
		doc = t.Logf
	}
	var notInTable, routingDiffs, docDiffs []string
	for _, name := range srv.names {
		e := srv.cmds[name]
		cmd := byFullName(name)
		if cmd == nil {
			notInTable = append(notInTable, name)
			continue
		}
		routing := false
		bad := func(format string, args ...any) {
			t.Helper()
			t.Errorf(format, args...)
			routing = true
		}
		got := fmt.Sprint(cmd.FirstKey, cmd.LastKey, cmd.Step)
		want := fmt.Sprint(e[3], e[4], e[5])
		if got != want {
			bad("%s: first, last, step: table %s, server %s", name, got, want)
		}
		switch serverArity := int(e[1].(int64)); {
		case cmd.Arity == serverArity:
		case !srv.pinned && widens(cmd.Arity, serverArity):
			// A newer server's optional arguments (ZRANK WITHSCORE in 7.2): the proxy refuses the new forms
			// with Redis's arity error until the table is regenerated, and routes the old ones as before.
			doc("%s: arity: table %d, server %d: the proxy refuses the newer forms", name, cmd.Arity, serverArity)
		default:
			bad("%s: arity: table %d, server %d", name, cmd.Arity, serverArity)
		}
		var flags command.Flag
		for _, f := range names(e[2]) {
			flags |= serverFlags[f] // a flag the table does not know is no routing flag
		}
		if got, want := cmd.Flags&routingFlags, flags&routingFlags; got != want {
			bad("%s: routing flags: table %q, server %q", name, got, want)
		}
		var specs []command.KeySpec
		for _, s := range e[8].([]any) {
			specs = append(specs, parseKeySpec(t, name, s))
		}
		if !reflect.DeepEqual(keyFinding(cmd.KeySpecs), keyFinding(specs)) {
			bad("%s: key specs:\n table  %+v\n server %+v", name, cmd.KeySpecs, specs)
		}
		if routing {
			routingDiffs = append(routingDiffs, name)
		}

		// What routing does not read: a failure on the table's version, a note on another.
		d := false
		other := func(names []string) []string { // without the routing flags, compared above
			return slices.DeleteFunc(names, func(n string) bool { return serverFlags[n]&routingFlags != 0 })
		}
		if got, want := other(splitNames(cmd.Flags.String())), other(names(e[2])); !slices.Equal(got, want) {
			doc("%s: other flags: table %q, server %q", name, got, want)
			d = true
		}
		if got, want := splitNames(cmd.Categories.String()), names(e[6]); !slices.Equal(got, want) {
			doc("%s: ACL categories: table %q, server %q", name, got, want)
			d = true
		}
		if got, want := slices.Sorted(slices.Values(cmd.Tips)), names(e[7]); !slices.Equal(got, want) {
			doc("%s: tips: table %q, server %q", name, got, want)
			d = true
		}
		if !routing && !reflect.DeepEqual(cmd.KeySpecs, specs) {
			doc("%s: key spec flags:\n table  %+v\n server %+v", name, cmd.KeySpecs, specs)
			d = true
		}
		if d {
			docDiffs = append(docDiffs, name)
		}
	}
	var notOnServer []string
	for _, c := range command.All() {
		if !srv.has(c) {
			notOnServer = append(notOnServer, c.Name)
		}
	}
	if len(notInTable) > 0 {
		doc("%d commands and subcommands of %s are not in the table (redis %s). Until the table is regenerated "+
			"the proxy does not forward them: it answers an unknown command with \"ERR unknown command ...\" and "+
			"an unknown subcommand with \"ERR unknown subcommand ... Try X HELP.\" itself (CLIENT SETINFO excepted, "+
			"which it answers itself): %s",
			len(notInTable), srv.version, command.RedisVersion, strings.Join(notInTable, " "))
	}
	if len(notOnServer) > 0 {
		doc("%d commands and subcommands of the table (redis %s) are not on %s (the proxy forwards them, and "+
			"the server answers that it does not know them): %s",
			len(notOnServer), command.RedisVersion, srv.version, strings.Join(notOnServer, " "))
	}
	if !srv.pinned {
		t.Logf("%s: %d commands and subcommands, the table %d; %d in both, %d of them differ in what routing "+
			"reads %v, %d only in flags, ACL categories or tips %v",
			srv.version, len(srv.names), command.Count(), len(srv.names)-len(notInTable),
			len(routingDiffs), routingDiffs, len(docDiffs), docDiffs)
	}
}

func byFullName(name string) *command.Command {
	for _, c := range command.All() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func names(v any) []string {
	var out []string
	for _, n := range v.([]any) {
		out = append(out, n.(string))
	}
	slices.Sort(out)
	return out
}

func splitNames(s string) []string {
	if s == "" {
		return nil
	}
	out := strings.Split(s, "|")
	slices.Sort(out)
	return out
}

func pairs(v any) map[string]any {
	a, _ := v.([]any)
	m := map[string]any{}
	for i := 0; i+1 < len(a); i += 2 {
		m[a[i].(string)] = a[i+1]
	}
	return m
}

var keySpecFlags = map[string]command.KeySpecFlag{
	"RO": command.KeyRO, "RW": command.KeyRW, "OW": command.KeyOW, "RM": command.KeyRM,
	"access": command.KeyAccess, "update": command.KeyUpdate, "insert": command.KeyInsert,
	"delete": command.KeyDelete, "not_key": command.KeyNotKey, "incomplete": command.KeyIncomplete,
	"variable_flags": command.KeyVariableFlags,
}

// parseKeySpec reads a key spec of the COMMAND reply independently of the generator.
func parseKeySpec(t *testing.T, name string, v any) command.KeySpec {
	m := pairs(v)
	var s command.KeySpec
	for _, f := range m["flags"].([]any) {
		fl, ok := keySpecFlags[f.(string)]
		if !ok {
			t.Errorf("%s: unknown key spec flag %q", name, f)
		}
		s.Flags |= fl
	}
	n := func(m map[string]any, k string) int { x, _ := m[k].(int64); return int(x) }
	bs, fk := pairs(m["begin_search"]), pairs(m["find_keys"])
	bspec, fspec := pairs(bs["spec"]), pairs(fk["spec"])
	switch bs["type"] {
	case "index":
		s.BeginSearch, s.Index = command.BeginIndex, n(bspec, "index")
	case "keyword":
		s.BeginSearch, s.Keyword, s.StartFrom = command.BeginKeyword, bspec["keyword"].(string), n(bspec, "startfrom")
	case "unknown":
		s.BeginSearch = command.BeginUnknown
	default:
		t.Errorf("%s: begin_search %v", name, bs)
	}
	switch fk["type"] {
	case "range":
		s.FindKeys, s.LastKey, s.KeyStep, s.Limit = command.FindRange, n(fspec, "lastkey"), n(fspec, "keystep"), n(fspec, "limit")
	case "keynum":
		s.FindKeys, s.KeyNumIdx, s.FirstKey, s.KeyStep = command.FindKeynum, n(fspec, "keynumidx"), n(fspec, "firstkey"), n(fspec, "keystep")
	case "unknown":
		s.FindKeys = command.FindUnknown
	default:
		t.Errorf("%s: find_keys %v", name, fk)
	}
	return s
}

// getkeysCases are requests whose keys KeyIndexes must find as COMMAND GETKEYS does, one per line, split on
// spaces; ” is an empty argument.
const getkeysCases = `
GET k
SET k v
SET k v EX 10 GET
SET k v NX
GETEX k PERSIST
GETEX k EX 10
GETDEL k
GETSET k v
MSET a 1 b 2 c 3
MSETNX a 1 b 2
MGET a b c d e f g h i j k l
DEL a b c
UNLINK a b
EXISTS a a b
TOUCH a b c
RENAME a b
RENAMENX a b
COPY a b
COPY a b DB 0 REPLACE
MOVE k 1
SMOVE a b m
SINTERSTORE d a b c
SUNIONSTORE d a
SDIFFSTORE d a b
SUNION a b
SINTER a b c
SINTERCARD 2 a b
SINTERCARD 2 a b LIMIT 5
SINTERCARD 3 a b
LMPOP 2 a b LEFT
LMPOP 1 a RIGHT COUNT 3
BLMPOP 0 2 a b LEFT COUNT 2
ZMPOP 1 a MIN
BZMPOP 0 2 a b MAX
BLPOP k1 k2 0
BRPOP k1 0
BRPOPLPUSH a b 0
BLMOVE a b LEFT RIGHT 0
LMOVE a b LEFT RIGHT
RPOPLPUSH a b
BZPOPMIN a b 0
XREAD COUNT 2 STREAMS a b 0 0
XREAD STREAMS a 0
XREAD BLOCK 0 STREAMS a b c $ $ $
XREAD STREAMS a b 0
XREAD COUNT 1 a 0
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c COUNT 1 BLOCK 10 NOACK STREAMS s t > >
XREADGROUP GROUP streams c STREAMS s >
EVAL return 2 a b c
EVAL return 0
EVAL return 3 a b
EVAL return -1 a
EVAL return 02 a b
EVAL return 1x a
EVAL return 4294967297 a
EVALSHA abc 1 k v
EVAL_RO return 1 k
EVALSHA_RO abc 2 k j
FCALL f 2 a b x
FCALL_RO f 1 a
FCALL f 0
ZUNIONSTORE d 2 a b WEIGHTS 1 2
ZUNIONSTORE d 0 a
ZUNIONSTORE d 3 a b
ZUNIONSTORE d 02 a b
ZINTERSTORE d 1 a
ZDIFFSTORE d 2 a b
ZUNION 2 a b
ZINTER 2 a b WITHSCORES
ZDIFF 2 a b WITHSCORES
ZINTERCARD 2 a b LIMIT 1
ZRANGESTORE d s 0 -1
SORT k
SORT k BY x STORE d
SORT k LIMIT 0 1 GET # STORE d
SORT k STORE d STORE e
SORT k STORE
SORT k GET STORE d
SORT_RO k BY x
MIGRATE h 6379 k 0 5000
MIGRATE h 6379 '' 0 5000 KEYS a b
MIGRATE h 6379 '' 0 5000 COPY REPLACE AUTH pw KEYS a b c
MIGRATE h 6379 '' 0 5000 AUTH2 u pw KEYS a
MIGRATE h 6379 '' 0 5000 AUTH keys KEYS a
MIGRATE h 6379 k 0 5000 KEYS a b
GEORADIUS k 0 0 1 km STORE d
GEORADIUS k 0 0 1 km STOREDIST d
GEORADIUS k 0 0 1 km WITHDIST COUNT 3 STORE d
GEORADIUS k 0 0 1 km STORE
GEORADIUS k 0 0 1 km STORE d STOREDIST e
GEORADIUSBYMEMBER k m 1 km STORE d
GEORADIUS_RO k 0 0 1 km
GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km
OBJECT ENCODING k
OBJECT FREQ k
XINFO STREAM k
XINFO STREAM k FULL
XINFO GROUPS k
XINFO CONSUMERS k g
MEMORY USAGE k
MEMORY USAGE k SAMPLES 5
BITOP AND d a b c
BITOP NOT d a
BITCOUNT k
BITFIELD k GET u8 0
BITFIELD_RO k GET u8 0
PFMERGE d a b
PFCOUNT a b
LCS a b
HSET h f v
HMGET h f g
SADD s a b
ZADD z 1 a
XADD s * f v
XGROUP CREATE s g $
XGROUP DESTROY s g
XACK s g 1-1
XCLAIM s g c 0 1-1
XAUTOCLAIM s g c 0 0
WATCH a b
DUMP k
RESTORE k 0 x
EXPIRE k 10
SETRANGE k 0 x
GETRANGE k 0 1
TYPE k
LPOS l x
OBJECT HELP
PUBLISH ch msg
SPUBLISH ch msg
PING
`

// TestKeyIndexesMatchServer compares KeyIndexes with COMMAND GETKEYS for the requests of getkeysCases and
// keyCases.
func TestKeyIndexesMatchServer(t *testing.T) {
	srv := startServer(t)
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
	if len(reqs) < 60 {
		t.Fatalf("only %d requests", len(reqs))
	}
	compareGetkeys(t, srv, reqs)
}

// TestKeyIndexesMatchServerRandom compares KeyIndexes with COMMAND GETKEYS for random requests to every
// command with keys.
func TestKeyIndexesMatchServerRandom(t *testing.T) {
	srv := startServer(t)
	n := 300
	if testing.Short() {
		n = 20
	}
	var reqs [][][]byte
	for _, r := range randomRequests(1, n) {
		reqs = append(reqs, r.args)
	}
	compareGetkeys(t, srv, reqs)
}

// request is a request for the differential tests; free are the positions of arguments that are neither
// keywords nor numbers, which the cluster test may replace by other names.
type request struct {
	args [][]byte
	free []int
}

// randomRequests makes n requests for every command with keys (and a key spec or a getkeys procedure), of
// arguments drawn from the keywords, numbers and odd strings that key finding looks at, and free names.
func randomRequests(seed uint64, n int) []request {
	rng := rand.New(rand.NewPCG(seed, 2))
	words := []string{"STORE", "store", "STOREDIST", "STREAMS", "streams", "KEYS", "keys", "LIMIT", "GET",
		"BY", "AUTH", "AUTH2", "COUNT", "BLOCK", "GROUP", "NOACK", "COPY", "REPLACE", "WEIGHTS", "STREAMS\x00x",
		"ſtreams", "LEFT", "MIN", "FULL", "SAMPLES", "GETKEYS"}
	numbers := []string{"0", "1", "2", "3", "4", "-1", "02", " 2", "+1", "2abc", "4294967297", "4294967296",
		"2147483649", "99999999999999999999", "", "1\x00"}
	var reqs []request
	for _, cmd := range command.All() {
		if cmd.Subcommands != nil || (len(cmd.KeySpecs) == 0 && !cmd.Has(command.MovableKeys)) {
			continue
		}
		name := strings.Split(cmd.Name, "|")
		for range n {
			argc := cmd.Arity
			if argc < 0 {
				argc = -argc + rng.IntN(9)
			}
			var r request
			for _, p := range name {
				r.args = append(r.args, []byte(strings.ToUpper(p)))
			}
			for i := len(r.args); i < argc; i++ {
				var a string
				switch x := rng.IntN(10); {
				case x < 3:
					a = words[rng.IntN(len(words))]
				case x < 7:
					a = numbers[rng.IntN(len(numbers))]
				default:
					a = fmt.Sprintf("k%d", i)
					r.free = append(r.free, i)
				}
				r.args = append(r.args, []byte(a))
			}
			reqs = append(reqs, r)
		}
	}
	return reqs
}

// compareGetkeys pipelines COMMAND GETKEYS for every request and compares the replies with KeyIndexes: the
// key names (GETKEYS gives names, not positions), and ok against GETKEYS's "Invalid arguments" error. On a
// server of another version than the table's, requests to commands the server does not have are left out
// (and counted in the log).
func compareGetkeys(t *testing.T, srv *liveServer, reqs [][][]byte) {
	t.Helper()
	c := srv.Conn
	const batch = 500
	failures := 0
	skipped := map[string]bool{}
	reqs = slices.DeleteFunc(slices.Clone(reqs), func(args [][]byte) bool {
		if len(args) < 2 {
			return true // COMMAND GETKEYS needs a command with arguments.
		}
		if cmd, st := command.Lookup(args); st == command.LookupOK && !srv.pinned && !srv.has(cmd) {
			skipped[cmd.Name] = true
			return true
		}
		return false
	})
	for start := 0; start < len(reqs); start += batch {
		end := min(start+batch, len(reqs))
		for _, args := range reqs[start:end] {
			c.Send(append(bs("COMMAND", "GETKEYS"), args...)...)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, args := range reqs[start:end] {
			v, err := c.Receive()
			if err != nil {
				t.Fatal(err)
			}
			cmd, st := command.Lookup(args)
			if st != command.LookupOK {
				t.Errorf("%q: Lookup %v, server %v", args, st, v)
				continue
			}
			idx, ok := command.KeyIndexes(cmd, args, nil)
			got := []string{}
			for _, i := range idx {
				got = append(got, string(args[i]))
			}
			want := []string{}
			wantOK := true
			switch v := v.(type) {
			case liveredis.Error:
				switch string(v) {
				case "ERR Invalid arguments specified for command":
					wantOK = false
				case "ERR The command has no key arguments":
				default:
					t.Errorf("%q: server: %v", args, v)
					continue
				}
			case []any:
				for _, k := range v {
					want = append(want, k.(string))
				}
			}
			// A command that may have no keys gets an empty list from GETKEYS for a bad key count too, so
			// ok cannot be checked against the server when the list is empty.
			okKnown := len(want) > 0 || !cmd.Has(command.NoMandatoryKeys)
			if !slices.Equal(got, want) || (okKnown && ok != wantOK) {
				t.Errorf("%q: KeyIndexes %q (positions %v, ok %v); GETKEYS %q (ok %v)", args, got, idx, ok, want, wantOK)
				if failures++; failures > 30 {
					t.Fatal("too many failures")
				}
			}
		}
	}
	t.Logf("%d requests compared", len(reqs))
	if len(skipped) > 0 {
		t.Logf("requests to %d commands of the table that %s does not have were not sent: %s",
			len(skipped), srv.version, strings.Join(slices.Sorted(maps.Keys(skipped)), " "))
	}
}

// TestErrorsMatchServer sends requests that Redis rejects before running them and compares its errors with
// UnknownCommandError, UnknownSubcommandError and ArityError: the kind of error (unknown command, unknown
// subcommand, wrong number of arguments) against any server, the exact text against the table's version
// only. On another server, requests to commands it does not have are left out, and differing texts are
// logged: the proxy's texts are those of Redis command.RedisVersion.
func TestErrorsMatchServer(t *testing.T) {
	srv := startServer(t)
	c := srv.Conn
	long := strings.Repeat("x", 200)
	reqs := [][][]byte{
		bs("foo", "a", "b"),
		bs("foo"),
		bs("FOO", long, "y"),
		bs(long, "a"),
		bs("foo", strings.Repeat("a", 100), "bcdefghijklmnopqrstuvwxyz", "c"),
		bs("foo", strings.Repeat("a", 110), "bcdefghijklmnopqrstuvwxyz", "c"),
		bs("foo", strings.Repeat("a", 125), "b", "c"),
		bs("foo", strings.Repeat("a", 126), "b", "c"),
		bs("fo\r\no", "a\x00b", "c\nd", "\x00"),
		bs("get\x00", "k"),
		bs("client|setname", "x"),
		bs("get"),
		bs("GET", "a", "b"),
		bs("client", "foo"),
		bs("CLIENT", "FOO", "bar"),
		bs("client", "foo\x00bar"),
		bs("Client", "fo\r\no"),
		bs("client", long),
		bs("client", "setname"),
		bs("object"),
		bs("config", "nosuch", "x"),
		bs("config"),
	}
	// Every command and subcommand with the wrong number of arguments (rejected before it runs), and every
	// container with an unknown subcommand.
	for _, cmd := range command.All() {
		name := bs(strings.Split(strings.ToUpper(cmd.Name), "|")...)
		switch {
		case cmd.Subcommands != nil:
			reqs = append(reqs, append(name, []byte("no-such-subcommand")))
			if cmd.Arity < -1 {
				reqs = append(reqs, name)
			}
		case cmd.Arity > 0:
			args := slices.Clone(name)
			for len(args) <= cmd.Arity {
				args = append(args, []byte("x"))
			}
			reqs = append(reqs, args)
		case cmd.Arity < -1 && -cmd.Arity-1 >= len(name):
			args := slices.Clone(name)
			for len(args) < -cmd.Arity-1 {
				args = append(args, []byte("x"))
			}
			reqs = append(reqs, args)
		}
	}
	for _, args := range reqs {
		c.Send(args...)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	type diff struct {
		args      [][]byte
		got, want string
	}
	var diffs []diff
	skipped := map[string]bool{}
	for _, args := range reqs {
		v, err := c.Receive()
		if err != nil {
			t.Fatal(err)
		}
		want, isErr := v.(liveredis.Error)
		if !isErr && bytes.IndexByte(args[0], 0) >= 0 {
			// Redis hashes the whole name but compares names with strcasecmp, which stops at the NUL: when
			// "get\x00" falls in GET's hash bucket (a random seed per server, about one start in 150) it runs
			// GET. Lookup takes it as the unknown command it is on every other start.
			t.Logf("%q: server replied %v: its hash seed put the name in the bucket of the name before the NUL", args, v)
			continue
		}
		if !isErr {
			t.Errorf("%q: server replied %v, not an error", args, v)
			continue
		}
		var got string
		cmd, st := command.Lookup(args)
		switch st {
		case command.Unknown:
			got = command.UnknownCommandError(args)
		case command.UnknownSubcommand:
			got = command.UnknownSubcommandError(args)
		case command.WrongArity:
			got = command.ArityError(cmd)
		default:
			t.Errorf("%q: Lookup says %v", args, st)
			continue
		}
		if !srv.pinned && cmd != nil && !srv.has(cmd) {
			skipped[cmd.Name] = true
			continue
		}
		if k := errorKind(string(want)); k != st && k != command.LookupOK {
			t.Errorf("%q: Lookup says %v, the server %v: %q", args, st, k, want)
			continue
		}
		if got != string(want) {
			diffs = append(diffs, diff{args, got, string(want)})
		}
	}
	t.Logf("%d requests compared", len(reqs))
	if len(skipped) > 0 {
		t.Logf("requests to %d commands of the table that %s does not have were not compared: %s",
			len(skipped), srv.version, strings.Join(slices.Sorted(maps.Keys(skipped)), " "))
	}
	t.Run("texts", func(t *testing.T) {
		for _, d := range diffs {
			if srv.pinned {
				t.Errorf("%q:\n got  %q\n want %q", d.args, d.got, d.want)
			} else {
				t.Logf("%q:\n proxy  %q\n server %q", d.args, d.got, d.want)
			}
		}
		if !srv.pinned && len(diffs) > 0 {
			t.Skipf("%d of %d error texts differ (logged above): the proxy's are those of redis %s "+
				"(command.RedisVersion), compared exactly only with that version; this server is %s",
				len(diffs), len(reqs), command.RedisVersion, srv.version)
		}
	})
}

// errorKind is the kind of rejection an error reply is, as a Lookup status: Unknown, UnknownSubcommand or
// WrongArity, or LookupOK for a text of none of these forms.
func errorKind(e string) command.Status {
	switch {
	case strings.HasPrefix(e, "ERR unknown command "):
		return command.Unknown
	case strings.HasPrefix(e, "ERR unknown subcommand "):
		return command.UnknownSubcommand
	case strings.Contains(e, "wrong number of arguments for "):
		return command.WrongArity
	}
	return command.LookupOK
}
