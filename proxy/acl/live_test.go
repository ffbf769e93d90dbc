package acl_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/proxy/command"
)

// The differential tests run a real redis-server (7.0.15, the version of the command table) and compare
// what it says of users defined by the same rules with what this package says.

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// liveUsers are the users of the differential tests: name and rules. They cover every rule kind.
var liveUsers = [][2]string{
	{"default", "on nopass skip-sanitize-payload ~* &* +@all"},
	{"all", "on nopass ~* &* +@all"},
	{"allwords", "on nopass allkeys allchannels allcommands"},
	{"pw", "on >secret >other <other #" + sha("hashed") + " >x !" + sha("x") + " ~foo:* +get +set"},
	{"pwreset", ">a >b resetpass >c nopass >d"},
	{"off", "off ~* +@all"},
	{"rw", "on nopass %R~r:* %W~w:* ~rw:* %RW~both:* %wr~wr:* +@all"},
	{"ronly", "on nopass %R~* +@all &*"},
	{"wonly", "on nopass %W~* +@all"},
	{"rwmerge", "%R~a %W~a %R~b %R~b +@all"},
	{"emptyread", "%R %W~ +@all"},
	{"chans", "~k* &ch:* &news.* &exact +@pubsub +get"},
	{"nodanger", "+@all -@dangerous ~*"},
	{"readwrite", "-@all +@read +@write -@admin ~*"},
	{"config", "+config|get +config|set ~*"},
	{"confignoset", "+config -config|set"},
	{"client", "+client|list +client|info +client|setname"},
	{"firstargs", "-@all +select|0 +select|1 +debug|object +debug|OBJECT +select|0"},
	{"selectexcept", "+@all -select +select|0"},
	{"selectreset", "+select|0 +select"},
	{"selectbit", "+select +select|5"},
	{"selectcat", "+select|0 +@connection"},
	{"keysreset", "resetkeys ~a ~b resetkeys ~c"},
	{"selectors", "~a (~b +get) (~c +set &x)"},
	{"clearsel", "(+get ~x) clearselectors (+set ~y) ( +del  ~z )"},
	{"quoted", "(~'q\\'x' +get) (\"~b\\x41\" +set)"},
	{"badquote", "(~\"x +get)"},
	{"emptysel", "() +get"},
	{"reset", "on >pw ~a &b +get (+set) reset +get ~k"},
	{"sanitize", "skip-sanitize-payload +get"},
	{"hashstr", "+@hash +@string -hset ~h:*"},
	{"geo", "+@geo %R~g* %W~dst*"},
	{"scripts", "+eval +evalsha +fcall +eval_ro +fcall_ro ~s:*"},
	{"scriptrw", "+@scripting %R~ro:* %W~wo:*"},
	{"multikey", "+zunionstore +sunionstore +mset +mget +del +zinterstore +lmpop %R~src* %W~dst* ~both*"},
	{"sortmig", "+sort +sort_ro +migrate %R~* %W~out*"},
	{"chansel", "+@all resetchannels &a &b* (+publish &x) (+subscribe &y*)"},
	{"psub", "+psubscribe +punsubscribe +unsubscribe &p* &exact"},
	{"shard", "+ssubscribe +spublish +sunsubscribe &sh*"},
	{"keyspace", "+@keyspace -@dangerous ~*"},
	{"slow", "+@slow"},
	{"fastnoslow", "+@fast -@slow ~*"},
	{"noauth", "nocommands +acl|whoami"},
	{"nothing", "on nopass -@all"},
	{"nopubsub", "~* +@all -@pubsub +publish"},
	{"complex", "+@all -@keyspace -@read"},
	{"admin", "-@all +@admin -config +config|get"},
	{"conntx", "+@connection +@transaction ~*"},
	{"bitmap", "+@bitmap %R~b* +set"},
	{"setget", "+set +getex %R~* %W~w*"},
	{"streams", "+xread +xreadgroup +xadd ~s* %R~r*"},
	{"globs", "~user:[0-9]* ~obj:?? ~esc\\* ~[^a]x ~[a- ~\\ +get"},
	{"debugsub", "+@all -debug +debug|sleep"},
	{"containers", "+memory|usage +object|encoding +object %R~*"},
	{"clientminus", "+@all -client|kill -client|pause ~*"},
	{"command", "-@all +command -command|getkeys +command|getkeys"},
	{"dups", "+@read -@string +get +get"},
	{"upper", "ON NOPASS +GET ~K* +@READ &CH RESETCHANNELS"},
	{"emptyname", "+@all -@all"},
	{"catall", "+@all -@all +@all -get"},
	{"future", "-@all +@all -@admin +config|get"},
	{"sel3", "~a +get (~b +get) (+set ~c) (%R~d +mget) (&p +publish)"},
	{"selflags", "+@all (allkeys allchannels allcommands)"},
	{"selfirst", "(+select|0 -@all +select|1)"},
	{"pubkeys", "+@all ~x (&c +publish ~*)"},
	{"long", "+get +set +hget +hset +lpush +rpush +sadd +zadd +incr +decr +append +strlen +exists +del +expire +ttl ~*"},
}

// liveRequests are the requests of the DRYRUN comparisons, besides random ones.
var liveRequests = []string{
	"GET k", "GET foo:1", "SET foo:1 v", "SET r:1 v", "GET r:1", "GET w:1", "SET w:1 v", "SET rw:1 v GET",
	"GET rw:1", "SET w:1 v GET", "MGET r:1 w:1", "MSET r:1 a w:1 b", "MSET w:1 a w:2 b", "DEL w:1", "DEL r:1",
	"GET both:1", "SET both:1 v", "GET wr:1", "GET a", "SET a v", "GET b", "SET b v", "GET c", "SET c v",
	"GET d", "MGET d d", "GET ''", "SET '' v", "GET x", "GET y", "GET z", "SET y v", "DEL z", "GET q'x",
	"GET bA", "SET bA v",
	"SUNIONSTORE dst1 src1 src2", "SUNIONSTORE src1 dst1", "SUNIONSTORE dst1 both1 src1",
	"ZUNIONSTORE dst 2 src1 src2", "ZUNIONSTORE dst +2 src1 src2", "ZUNIONSTORE src 1 dst",
	"ZINTERSTORE dst 02 src1 src2", "LMPOP 1 src1 LEFT", "LMPOP 1 dst1 LEFT", "LMPOP +1 src1 LEFT",
	"EVAL s 2 s:a s:b", "EVAL s 0", "EVAL s 1 ro:x", "EVAL s 1 wo:x", "EVAL_RO s 1 ro:x", "EVAL_RO s 1 wo:x",
	"FCALL f 1 s:x", "FCALL f 1 ro:x", "FCALL_RO f 1 ro:x", "EVALSHA x 1 wo:1", "EVALSHA x +1 wo:1",
	"EVAL s +1 ro:x", "EVAL s 1 t:x",
	"PUBLISH ch:1 m", "PUBLISH other m", "PUBLISH x m", "PUBLISH a m", "PUBLISH b2 m", "PUBLISH CH m",
	"PUBLISH exact m", "PUBLISH news.x m", "PUBLISH c m", "PUBLISH p m",
	"SUBSCRIBE ch:1 ch:2", "SUBSCRIBE ch:1 x", "SUBSCRIBE y1 y2", "SUBSCRIBE a b1 y", "SUBSCRIBE x",
	"PSUBSCRIBE ch:*", "PSUBSCRIBE p*", "PSUBSCRIBE exact", "PSUBSCRIBE p* exact", "PSUBSCRIBE pa",
	"PSUBSCRIBE *", "PSUBSCRIBE y*", "UNSUBSCRIBE x", "PUNSUBSCRIBE x", "SUNSUBSCRIBE x",
	"SSUBSCRIBE sh1", "SSUBSCRIBE sh1 x", "SPUBLISH sh1 m", "SPUBLISH x m",
	"CONFIG GET maxmemory", "CONFIG SET maxmemory 1", "CONFIG RESETSTAT", "config get x",
	"CLIENT LIST", "CLIENT KILL ID 1", "CLIENT SETNAME x", "CLIENT INFO", "CLIENT PAUSE 1", "CLIENT ID",
	"AUTH x", "AUTH a b", "HELLO", "HELLO 3", "SELECT 0", "SELECT 1", "SELECT 2", "select 0", "SELECT 5",
	"DEBUG OBJECT k", "DEBUG object k", "DEBUG SLEEP 0", "DEBUG OBJECTX k",
	"SORT r:1", "SORT r:1 STORE out1", "SORT src STORE w:1", "SORT_RO r:1", "SORT x BY y GET z",
	"MIGRATE h 1 k 0 5", "MIGRATE h 1 '' 0 5 KEYS a out1", "MIGRATE h 1 out1 0 5",
	"GEORADIUS geo 0 0 1 km STORE dst", "GEORADIUS geo 0 0 1 km", "GEORADIUS geo 0 0 1 km STORE x",
	"GEORADIUS_RO geo 0 0 1 km", "GEOADD geo 0 0 m", "GEOADD dst 0 0 m", "GEOSEARCHSTORE dst geo FROMLONLAT 0 0 BYRADIUS 1 km",
	"XREAD STREAMS s1 0", "XREAD STREAMS r1 s1 0 0", "XREAD COUNT 1 STREAMS r1 0",
	"XREADGROUP GROUP g c STREAMS s1 >", "XREADGROUP GROUP g c STREAMS r1 >", "XADD s1 * f v", "XADD r1 * f v",
	"BITFIELD b1 GET u8 0", "BITFIELD b1 SET u8 0 1", "BITFIELD_RO b1 GET u8 0", "SETBIT b1 0 1", "GETBIT b1 0",
	"SET b1 v", "SET b1 v GET", "GETEX w1", "GETEX r1", "GETEX x",
	"PING", "ECHO x", "MULTI", "EXEC", "KEYS *", "SCAN 0", "FLUSHALL", "MEMORY USAGE k", "OBJECT ENCODING k",
	"OBJECT FREQ k", "OBJECT HELP", "MEMORY STATS",
	"HGET h:1 f", "HSET h:1 f v", "HSET x f v", "HGETALL h:1", "COPY a b", "RENAME rw:1 w:1", "LMOVE src1 dst1 LEFT RIGHT",
	"ACL WHOAMI", "ACL LIST", "ACL SETUSER x", "COMMAND", "COMMAND INFO get", "COMMAND GETKEYS get k", "INFO",
	"DBSIZE", "WATCH k", "LPUSH l v", "INCR k", "EXISTS k a", "EXPIRE k 1", "TTL k", "STRLEN k",
	"GET user:12", "GET user:x", "GET obj:ab", "GET obj:abc", "GET esc*", "GET escx", "GET bx", "GET ax",
	"GET [a-", "GET b", "GET \\", "GET K1", "GET k1", "SET K1 v",
}

func splitReq(s string) [][]byte {
	var out [][]byte
	for _, a := range strings.Split(s, " ") {
		if a == "''" {
			a = ""
		}
		out = append(out, []byte(a))
	}
	return out
}

// randomLiveRequests are requests to random commands with arguments from a pool of names the users'
// patterns care about.
func randomLiveRequests(rng *rand.Rand, n int) [][][]byte {
	pool := []string{"k", "foo:1", "r:1", "w:1", "rw:1", "both:1", "a", "b", "c", "x", "src1", "dst1", "out1",
		"s:a", "ro:x", "wo:x", "ch:1", "sh1", "p*", "exact", "h:1", "g1", "dst", "0", "1", "2", "GET", "STORE",
		"KEYS", "STREAMS", "", "k\x00x", "user:1"}
	var cmds []*command.Command
	for _, c := range command.All() {
		if c.Subcommands == nil {
			cmds = append(cmds, c)
		}
	}
	var out [][][]byte
	for len(out) < n {
		c := cmds[rng.IntN(len(cmds))]
		argc := c.Arity
		if argc < 0 {
			argc = -argc + rng.IntN(4)
		}
		var args [][]byte
		for _, p := range strings.Split(c.Name, "|") {
			args = append(args, []byte(strings.ToUpper(p)))
		}
		for len(args) < argc {
			args = append(args, []byte(pool[rng.IntN(len(pool))]))
		}
		if _, st := command.Lookup(args); st == command.LookupOK {
			out = append(out, args)
		}
	}
	return out
}

// liveConn is a pipelining RESP2 connection.
type liveConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

type replyError = redistest.Error

func dialLive(t *testing.T, addr string) *liveConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &liveConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
}

func (c *liveConn) send(args ...[]byte) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n", len(a))
		c.w.Write(a)
		c.w.WriteString("\r\n")
	}
}

func (c *liveConn) recv(t *testing.T) any {
	t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	v, err := readReply(c.r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readReply is redistest's reader, with an error reply returned as a value (replyError) at every level.
func readReply(r *bufio.Reader) (any, error) {
	v, err := redistest.ReadReply(r)
	var re redistest.Error
	if errors.As(err, &re) {
		return re, nil
	}
	return v, err
}

func (c *liveConn) do(t *testing.T, args ...string) any {
	t.Helper()
	var bs [][]byte
	for _, a := range args {
		bs = append(bs, []byte(a))
	}
	c.send(bs...)
	if err := c.w.Flush(); err != nil {
		t.Fatal(err)
	}
	return c.recv(t)
}

// normalizeRules makes a rule list comparable across servers: Redis emits the single-command rules after
// the category rules in the order of its command dictionary (seeded at random on every start), so those
// are grouped by command, the groups sorted, and within a container's group the subcommand rules sorted
// after the container's own rule (which Redis always emits first). First-argument rules keep their order.
func normalizeRules(rules string) string {
	toks := strings.Fields(rules)
	var head []string
	i := 0
	for i < len(toks) && (strings.HasPrefix(toks[i], "+@") || strings.HasPrefix(toks[i], "-@")) {
		head = append(head, toks[i])
		i++
	}
	groups := map[string][]string{}
	for _, tk := range toks[i:] {
		base, _, _ := strings.Cut(tk[1:], "|")
		groups[base] = append(groups[base], tk)
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	out := head
	for _, n := range names {
		g := groups[n]
		c, _ := command.Lookup([][]byte{[]byte(n)})
		if c != nil && c.Subcommands != nil {
			start := 0
			if !strings.Contains(g[0], "|") {
				start = 1
			}
			slices.Sort(g[start:])
		}
		out = append(out, g...)
	}
	return strings.Join(out, " ")
}

// normalizeDescribe applies normalizeRules to each selector of an ACL LIST line. Every selector ends with
// its command rules, which start at the first "+@all" or "-@all".
func normalizeDescribe(line string) string {
	parts := strings.Split(line, " (")
	for i, p := range parts {
		closing := ""
		if i > 0 {
			p = strings.TrimSuffix(p, ")")
			closing = ")"
		}
		j := strings.Index(p, "+@all")
		if k := strings.Index(p, "-@all"); j < 0 || (k >= 0 && k < j) {
			j = k
		}
		if j >= 0 {
			p = p[:j] + normalizeRules(p[j:])
		}
		parts[i] = p + closing
	}
	return strings.Join(parts, " (")
}

func normalizeInfo(in acl.Info) acl.Info {
	in.Commands = normalizeRules(in.Commands)
	for i := range in.Selectors {
		in.Selectors[i].Commands = normalizeRules(in.Selectors[i].Commands)
	}
	return in
}

// infoOf parses ACL GETUSER's RESP2 reply.
func infoOf(t *testing.T, v any) acl.Info {
	t.Helper()
	a, ok := v.([]any)
	if !ok {
		t.Fatalf("GETUSER reply %v", v)
	}
	strs := func(x any) []string {
		out := []string{}
		for _, e := range x.([]any) {
			out = append(out, e.(string))
		}
		return out
	}
	var in acl.Info
	for i := 0; i+1 < len(a); i += 2 {
		switch a[i].(string) {
		case "flags":
			in.Flags = strs(a[i+1])
		case "passwords":
			in.Passwords = strs(a[i+1])
		case "commands":
			in.Commands = a[i+1].(string)
		case "keys":
			in.Keys = a[i+1].(string)
		case "channels":
			in.Channels = a[i+1].(string)
		case "selectors":
			in.Selectors = []acl.SelectorInfo{}
			for _, s := range a[i+1].([]any) {
				sa := s.([]any)
				var si acl.SelectorInfo
				for j := 0; j+1 < len(sa); j += 2 {
					switch sa[j].(string) {
					case "commands":
						si.Commands = sa[j+1].(string)
					case "keys":
						si.Keys = sa[j+1].(string)
					case "channels":
						si.Channels = sa[j+1].(string)
					}
				}
				in.Selectors = append(in.Selectors, si)
			}
		default:
			t.Fatalf("GETUSER field %v", a[i])
		}
	}
	return in
}

func startLive(t *testing.T) (*redistest.Server, *liveConn, string) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not in PATH")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "users.acl")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := redistest.StartServer(t, "--aclfile", file)
	c := dialLive(t, srv.Addr)
	if v := c.do(t, "INFO", "server"); !strings.Contains(fmt.Sprint(v), "redis_version:"+command.RedisVersion) {
		t.Skipf("the server is not Redis %s", command.RedisVersion)
	}
	return srv, c, file
}

func liveLines() []string {
	var lines []string
	for _, u := range liveUsers {
		lines = append(lines, "user "+u[0]+" "+u[1])
	}
	return lines
}

// loadLive writes lines to the server's aclfile and runs ACL LOAD.
func loadLive(t *testing.T, c *liveConn, file string, lines []string) any {
	t.Helper()
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return c.do(t, "ACL", "LOAD")
}

func TestMatchesServer(t *testing.T) {
	_, c, file := startLive(t)
	lines := liveLines()
	if v := loadLive(t, c, file, lines); v != "OK" {
		t.Fatalf("ACL LOAD: %v", v)
	}
	users, err := acl.Build(lines, "")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("list", func(t *testing.T) {
		v := c.do(t, "ACL", "LIST").([]any)
		var want []string
		for _, l := range v {
			want = append(want, normalizeDescribe(l.(string)))
		}
		var got []string
		for _, l := range users.List() {
			got = append(got, normalizeDescribe(l))
		}
		if !slices.Equal(got, want) {
			for i := range max(len(got), len(want)) {
				var g, w string
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Errorf("ACL LIST:\n got %s\nwant %s", g, w)
				}
			}
		}
		u := c.do(t, "ACL", "USERS").([]any)
		var names []string
		for _, n := range u {
			names = append(names, n.(string))
		}
		if !slices.Equal(users.Names(), names) {
			t.Errorf("Names %q, ACL USERS %q", users.Names(), names)
		}
	})

	t.Run("getuser", func(t *testing.T) {
		for _, name := range users.Names() {
			want := normalizeInfo(infoOf(t, c.do(t, "ACL", "GETUSER", name)))
			got := normalizeInfo(users.Get(name).Info())
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Errorf("ACL GETUSER %s:\n got %#v\nwant %#v", name, got, want)
			}
		}
	})

	t.Run("setuser", func(t *testing.T) {
		for _, u := range liveUsers {
			name := "s_" + u[0]
			rules := strings.Fields(u[1])
			if strings.Contains(u[1], "'") || strings.Contains(u[1], "\"") || strings.Contains(u[1], "  ") {
				continue // the aclfile split keeps what Fields would not
			}
			args := append([]string{"ACL", "SETUSER", name}, rules...)
			if v := c.do(t, args...); v != "OK" {
				t.Errorf("ACL SETUSER %s: %v", name, v)
				continue
			}
			nu, err := acl.NewUser(name, rules...)
			if err != nil {
				t.Errorf("NewUser %s: %v", name, err)
				continue
			}
			list := c.do(t, "ACL", "LIST").([]any)
			var line string
			for _, l := range list {
				if strings.HasPrefix(l.(string), "user "+name+" ") {
					line = l.(string)
				}
			}
			if got := normalizeDescribe(nu.Describe()); got != normalizeDescribe(line) {
				t.Errorf("ACL SETUSER %s %s:\n got %s\nwant %s", name, u[1], got, normalizeDescribe(line))
			}
			// With on an existing user: the same rules again change nothing but duplicates.
			again, err := nu.With(rules...)
			if v := c.do(t, args...); (v == "OK") != (err == nil) {
				t.Errorf("ACL SETUSER %s again: %v; With: %v", name, v, err)
			} else if err == nil {
				list := c.do(t, "ACL", "LIST").([]any)
				for _, l := range list {
					if strings.HasPrefix(l.(string), "user "+name+" ") {
						line = l.(string)
					}
				}
				if got := normalizeDescribe(again.Describe()); got != normalizeDescribe(line) {
					t.Errorf("ACL SETUSER %s twice:\n got %s\nwant %s", name, got, normalizeDescribe(line))
				}
			}
			c.do(t, "ACL", "DELUSER", name)
		}
	})

	t.Run("dryrun", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		var reqs [][][]byte
		for _, r := range liveRequests {
			args := splitReq(r)
			if _, st := command.Lookup(args); st != command.LookupOK {
				t.Fatalf("request %q: %v", r, st)
			}
			reqs = append(reqs, args)
		}
		reqs = append(reqs, randomLiveRequests(rng, 300)...)
		reqs = append(reqs, splitReq("PSUBSCRIBE p*\x00x"), splitReq("PSUBSCRIBE exact\x00"),
			splitReq("SELECT 0\x00x"), splitReq("GET foo:1\x00"), splitReq("PUBLISH ch:\x00 m"))
		names := users.Names()
		n, failures := 0, 0
		kinds := map[acl.Denial]int{}
		for _, name := range names {
			u := users.Get(name)
			for _, args := range reqs {
				c.send(append([][]byte{[]byte("ACL"), []byte("DRYRUN"), []byte(name)}, args...)...)
			}
			if err := c.w.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, args := range reqs {
				v := c.recv(t)
				cmd, _ := command.Lookup(args)
				d, pos := u.Check(cmd, args)
				got := "OK"
				if d != acl.Allowed {
					got = d.DryRunError(u, cmd, args, pos)
				}
				n++
				kinds[d]++
				if fmt.Sprint(v) != got {
					t.Errorf("ACL DRYRUN %s %q: %v; Check %v at %d: %q", name, args, v, d, pos, got)
					if failures++; failures > 40 {
						t.Fatal("too many failures")
					}
				}
				if u.Unrestricted() && d != acl.Allowed {
					t.Errorf("%s is unrestricted but Check(%q) = %v", name, args, d)
				}
			}
		}
		t.Logf("%d DRYRUN requests compared: %d allowed, %d commands, %d keys, %d channels denied", n,
			kinds[acl.Allowed], kinds[acl.DenyCommand], kinds[acl.DenyKey], kinds[acl.DenyChannel])
		if kinds[acl.DenyKey] < 100 || kinds[acl.DenyChannel] < 50 || kinds[acl.Allowed] < 1000 {
			t.Errorf("too few requests of some kind: %v", kinds)
		}
		for _, name := range []string{"all", "allwords", "default", "selflags"} {
			if !users.Get(name).Unrestricted() {
				t.Errorf("%s: not Unrestricted", name)
			}
		}
		for _, name := range []string{"off", "ronly", "nodanger", "catall", "pubkeys", "future"} {
			if users.Get(name).Unrestricted() {
				t.Errorf("%s: Unrestricted", name)
			}
		}
	})

	t.Run("cat", func(t *testing.T) {
		want := c.do(t, "ACL", "CAT").([]any)
		got := acl.Categories()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ACL CAT %v, Categories %v", want, got)
		}
		for _, cat := range got {
			v := c.do(t, "ACL", "CAT", strings.ToUpper(cat)).([]any)
			var want []string
			for _, n := range v {
				want = append(want, n.(string))
			}
			names, ok := acl.CommandsIn(strings.ToUpper(cat))
			if !ok {
				t.Errorf("CommandsIn(%s) not ok", cat)
			}
			if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
				t.Errorf("ACL CAT %s: %d commands, CommandsIn %d", cat, len(want), len(names))
			}
		}
		if v, ok := c.do(t, "ACL", "CAT", "nosuch").(replyError); !ok {
			t.Errorf("ACL CAT nosuch: %v", v)
		}
		if _, ok := acl.CommandsIn("nosuch"); ok {
			t.Error("CommandsIn(nosuch) ok")
		}
		if _, ok := acl.CommandsIn("@read"); ok {
			t.Error("CommandsIn(@read) ok")
		}
	})

	t.Run("auth", func(t *testing.T) {
		tries := [][2]string{{"pw", "secret"}, {"pw", "other"}, {"pw", "hashed"}, {"pw", "x"}, {"pw", ""},
			{"pwreset", "a"}, {"pwreset", "d"}, {"pwreset", "zzz"}, {"off", ""}, {"all", "anything"},
			{"nothing", "x"}, {"reset", "pw"}, {"upper", "x"}, {"default", "x"}}
		for _, tr := range tries {
			ac := dialLive(t, c.c.RemoteAddr().String())
			v := ac.do(t, "AUTH", tr[0], tr[1])
			if got := users.Get(tr[0]).Authenticate([]byte(tr[1])); got != (v == "OK") {
				t.Errorf("AUTH %s %q: %v; Authenticate %v", tr[0], tr[1], v, got)
			}
		}
	})
}

// TestRuleErrorsMatchServer compares the errors of ACL SETUSER with NewUser's, and ACL LOAD's refusals
// with Build's.
func TestRuleErrorsMatchServer(t *testing.T) {
	_, c, file := startLive(t)
	cases := [][]string{
		{"+nosuch"}, {"+@nosuch"}, {"-@nosuch"}, {"-select|0"}, {"+client|list|x"}, {"+get|"}, {"+config|"},
		{"+config|nosuch"}, {"~a\tb"}, {"&a\x00b"}, {"allchannels", "&x"}, {"~*", "~a"}, {"allkeys", "%R~a"},
		{"<notthere"}, {"#abc"}, {"!abc"}, {"#" + strings.ToUpper(sha("x"))}, {"!" + sha("x")}, {"%"},
		{"%~x"}, {"%X~x"}, {"%RR~x"}, {"%RWR~x"}, {"(~a"}, {"(foo)"}, {"(on)"}, {"bogus"}, {"+"}, {"-"},
		{"+@"}, {"()"}, {"(\"unbalanced)"}, {"+get|x"}, {"+@all|x"}, {"+|"}, {"|"}, {"+a|b|c"}, {"-get|x"},
		{"(+get", "~a", "(+set", "~b)"}, {"(~a", "~b)", "junk"}, {"(+get ~a) bad"}, {"(+get ~*) (~* ~a)"},
		{"(", ")"}, {"on", "(", "+get)", ")"}, {"reſet"}, {"+ɢet"}, {"+GET"}, {"+CONFIG|GET"}, {"ON"},
		{"(reset)"}, {"(>pw)"}, {"(clearselectors)"}, {"+config|get|x"}, {"+@ALL"}, {"-@ALL"}, {"+@Read"},
		{"%R~a b"}, {"~"}, {"&"}, {"resetchannels", "&"}, {"\x00"}, {"on\x00junk"}, {"+get\x00x"},
		{"+select|a\x00b"}, {"(~a\x00b)"}, {"%R\x00~a"},
	}
	for i, rules := range cases {
		name := "e" + strconv.Itoa(i)
		args := append([]string{"ACL", "SETUSER", name}, rules...)
		v := c.do(t, args...)
		_, err := acl.NewUser(name, rules...)
		want := "OK"
		if e, ok := v.(replyError); ok {
			want = string(e)
		}
		got := "OK"
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("ACL SETUSER %s %q: %s; NewUser: %s", name, rules, want, got)
		}
		if want == "OK" {
			nu, _ := acl.NewUser(name, rules...)
			for _, l := range c.do(t, "ACL", "LIST").([]any) {
				if strings.HasPrefix(l.(string), "user "+name+" ") {
					if normalizeDescribe(l.(string)) != normalizeDescribe(nu.Describe()) {
						t.Errorf("%q: ACL LIST %s, Describe %s", rules, l, nu.Describe())
					}
				}
			}
		}
	}
	if v := c.do(t, "ACL", "SETUSER", "a b"); fmt.Sprint(v) != "ERR Usernames can't contain spaces or null characters" {
		t.Errorf("ACL SETUSER 'a b': %v", v)
	}
	if _, err := acl.NewUser("a b"); err == nil || err.Error() != "ERR Usernames can't contain spaces or null characters" {
		t.Errorf("NewUser('a b'): %v", err)
	}

	// ACL LOAD and Build agree on which files are valid.
	files := [][]string{
		{"user a on +get"},
		{"user a  on  +get "},
		{"user a on +nosuch"},
		{"user a on bogus"},
		{"user a on", "user a off"},
		{"user"},
		{"users a"},
		{"User a"},
		{"user a\tb on"},
		{"user a (+get"},
		{"user a (+get ~x)"},
		{"user a (+get  ~x)"},
		{"user a ( +get ~x )"},
		{"user a on\t"},
		{"user a on\t+get"},
		{"\tuser a on +get\t"},
		{"", "user a on", ""},
		{"user a %~x"},
		{"user default on nopass ~* &* +@all >pw"},
		{"user default on nopass ~* &* +@all", "user default on"},
		{"user a on ~* ~b"},
		{"user a on <x"},
		{"user a on #abc"},
		{"user a (~a ~b) (bad)"},
		{"user  a on"},
	}
	for _, lines := range files {
		v := loadLive(t, c, file, lines)
		_, err := acl.Build(lines, "")
		if (v == "OK") != (err == nil) {
			t.Errorf("aclfile %q: ACL LOAD %v; Build %v", lines, v, err)
		}
		if v == "OK" {
			users, _ := acl.Build(lines, "")
			list := c.do(t, "ACL", "LIST").([]any)
			got := users.List()
			for i := range list {
				if i >= len(got) || normalizeDescribe(got[i]) != normalizeDescribe(list[i].(string)) {
					t.Errorf("aclfile %q: ACL LIST %q; List %q", lines, list, got)
					break
				}
			}
		}
	}

	// requirepass without a default line.
	loadLive(t, c, file, []string{"user a on"})
	c.do(t, "CONFIG", "SET", "requirepass", "pw")
	users, _ := acl.Build([]string{"user a on"}, "pw")
	if got, want := users.Default().Describe(), fmt.Sprint(c.do(t, "ACL", "LIST").([]any)[1]); got != want {
		t.Errorf("requirepass: ACL LIST %s; Describe %s", want, got)
	}
	if users.Default().NoPass() || !users.Default().Authenticate([]byte("pw")) || users.Default().Authenticate([]byte("x")) {
		t.Error("requirepass: the default user does not take exactly pw")
	}
	c.do(t, "CONFIG", "SET", "requirepass", "")
}

// TestGlobMatchesServer compares Match with KEYS on a server.
func TestGlobMatchesServer(t *testing.T) {
	_, c, _ := startLive(t)
	keys := []string{"a", "b", "ab", "abc", "abcd", "aXc", "a*c", "a?c", "a[c", "a]c", "a\\c", "a-c", "\x80",
		"\xff", "a\xffb", "é", "hello", "hallo", "hxllo", "heeeello", "-", "]", "[", "^", "\\", "x^y", "a^c",
		"user:1", "user:12", "user:x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "\x00", "a\x00b", "*", "?", "zz"}
	patterns := []string{"a", "a*", "*a", "*", "**", "a**c", "?", "??", "a?c", "a[bX]c", "a[^b]c", "a[a-c]c",
		"a[c-a]c", "a[\\]]c", "a[\\-]c", "a[-]c", "a[", "a[b", "a[^", "[", "[^", "[]", "[]]", "[^]]", "\\",
		"a\\*c", "a\\?c", "a\\[c", "a\\", "a\\\\c", "h?llo", "h*llo", "h[ae]llo", "h[^e]llo", "h[a-b]llo",
		"[\x80-\xff]", "[a-\xff]", "[\xff-a]", "a[\x00-\xff]b", "*\x00*", "a\x00b", "[\\", "[a-", "[a-]",
		"user:[0-9]*", "user:??", "*:*", "a*b*c*d", "*a*a*a*a*a*a*a*a*a*b", "x[\\^]y", "[!a]", "*[", "*\\",
		"?*", "*?", "[*]", "[?]", "a[-c]c", "a[c-]c", "[]-]", "[^-]", "\\a", "*]", "[a-c-e]", "[\\a-c]",
		strings.Repeat("*a", 1000), strings.Repeat("*a", 1001), strings.Repeat("*?", 40)}
	c.do(t, "FLUSHALL")
	for _, k := range keys {
		c.do(t, "SET", k, "1")
	}
	c.do(t, "SET", strings.Repeat("a", 1100), "1")
	keys = append(keys, strings.Repeat("a", 1100))
	for _, tc := range matchCases {
		if tc.str != "" && !slices.Contains(keys, tc.str) {
			c.do(t, "SET", tc.str, "1")
			keys = append(keys, tc.str)
		}
		if !slices.Contains(patterns, tc.pattern) {
			patterns = append(patterns, tc.pattern)
		}
	}
	for _, p := range patterns {
		v := c.do(t, "KEYS", p).([]any)
		var want []string
		for _, k := range v {
			want = append(want, k.(string))
		}
		slices.Sort(want)
		var got []string
		for _, k := range keys {
			if acl.Match(p, k) || (p == "*" && k == "") {
				got = append(got, k)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("KEYS %q: %q; Match %q", p, want, got)
		}
	}
	c.do(t, "FLUSHALL")
}

// TestRandomRulesMatchServer gives random rule lists to ACL SETUSER and to NewUser, and compares the
// errors, ACL LIST, ACL GETUSER and ACL DRYRUN of random requests.
func TestRandomRulesMatchServer(t *testing.T) {
	_, c, _ := startLive(t)
	rng := rand.New(rand.NewPCG(5, 6))
	userRules := []string{"on", "off", "nopass", "resetpass", ">p1", ">p2", "<p1", "#" + sha("p2"), "!" + sha("p1"),
		"reset", "skip-sanitize-payload", "sanitize-payload", "clearselectors", "bogus", ""}
	selRules := []string{"~*", "~k*", "~a", "%R~r*", "%W~w*", "%RW~x", "%R~*", "%W~*", "allkeys", "resetkeys",
		"~[a-c]*", "%r~k1", "%W~k*", "&*", "&ch*", "&exact", "&a", "allchannels", "resetchannels", "+@all", "-@all",
		"allcommands", "nocommands", "+get", "-get", "+set", "+config", "-config", "+config|get", "-config|set",
		"+client|list", "+select|0", "+select|1", "-select", "+debug|object", "+client", "-client|kill", "%~x",
		"+nosuch", "+get|", "~a b"}
	for _, cat := range acl.Categories() {
		selRules = append(selRules, "+@"+cat, "-@"+cat)
	}
	all := command.All()
	pick := func() string {
		switch x := rng.IntN(20); {
		case x < 3:
			return userRules[rng.IntN(len(userRules))]
		case x < 12:
			return selRules[rng.IntN(len(selRules))]
		case x < 17:
			return []string{"+", "-"}[rng.IntN(2)] + all[rng.IntN(len(all))].Name
		default:
			var b []string
			for range 1 + rng.IntN(3) {
				b = append(b, selRules[rng.IntN(len(selRules))])
			}
			return "(" + strings.Join(b, " ") + ")"
		}
	}
	var reqs [][][]byte
	for _, r := range liveRequests[:80] {
		reqs = append(reqs, splitReq(r))
	}
	reqs = append(reqs, randomLiveRequests(rng, 40)...)
	n := 400
	if testing.Short() {
		n = 50
	}
	failures, okUsers, badUsers := 0, 0, 0
	fail := func(format string, args ...any) {
		t.Errorf(format, args...)
		if failures++; failures > 30 {
			t.Fatal("too many failures")
		}
	}
	for i := range n {
		var rules []string
		for range 1 + rng.IntN(8) {
			rules = append(rules, pick())
		}
		name := "r" + strconv.Itoa(i)
		c.send(append([][]byte{[]byte("ACL"), []byte("SETUSER"), []byte(name)}, toBytes(rules)...)...)
		c.send([]byte("ACL"), []byte("LIST"))
		c.send([]byte("ACL"), []byte("GETUSER"), []byte(name))
		for _, args := range reqs {
			c.send(append([][]byte{[]byte("ACL"), []byte("DRYRUN"), []byte(name)}, args...)...)
		}
		c.send([]byte("ACL"), []byte("DELUSER"), []byte(name))
		if err := c.w.Flush(); err != nil {
			t.Fatal(err)
		}
		set, list, get := c.recv(t), c.recv(t), c.recv(t)
		dry := make([]any, len(reqs))
		for j := range dry {
			dry[j] = c.recv(t)
		}
		c.recv(t)
		u, err := acl.NewUser(name, rules...)
		if e, ok := set.(replyError); ok {
			badUsers++
			if err == nil || err.Error() != string(e) {
				fail("ACL SETUSER %q: %s; NewUser: %v", rules, e, err)
			}
			continue
		}
		okUsers++
		if err != nil {
			fail("ACL SETUSER %q: %v; NewUser: %v", rules, set, err)
			continue
		}
		var line string
		for _, l := range list.([]any) {
			if strings.HasPrefix(l.(string), "user "+name+" ") {
				line = l.(string)
			}
		}
		if got, want := normalizeDescribe(u.Describe()), normalizeDescribe(line); got != want {
			fail("%q: ACL LIST\n got %s\nwant %s", rules, got, want)
		}
		if got, want := normalizeInfo(u.Info()), normalizeInfo(infoOf(t, get)); fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			fail("%q: ACL GETUSER\n got %#v\nwant %#v", rules, got, want)
		}
		for j, args := range reqs {
			cmd, _ := command.Lookup(args)
			d, pos := u.Check(cmd, args)
			got := "OK"
			if d != acl.Allowed {
				got = d.DryRunError(u, cmd, args, pos)
			}
			if fmt.Sprint(dry[j]) != got {
				fail("%q: ACL DRYRUN %q: %v; Check: %s", rules, args, dry[j], got)
			}
			if u.Unrestricted() && d != acl.Allowed {
				fail("%q: unrestricted, but Check(%q) = %v", rules, args, d)
			}
		}
	}
	t.Logf("%d rule lists accepted, %d refused, by both", okUsers, badUsers)
	if okUsers < n/3 || badUsers < n/20 {
		t.Errorf("too few accepted (%d) or refused (%d) rule lists", okUsers, badUsers)
	}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
