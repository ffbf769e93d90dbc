package acl_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/proxy/command"
)

func mustBuild(t *testing.T, lines ...string) *acl.Users {
	t.Helper()
	us, err := acl.Build(lines, "")
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func lookup(t testing.TB, req string) (*command.Command, [][]byte) {
	t.Helper()
	args := splitReq(req)
	c, st := command.Lookup(args)
	if st != command.LookupOK {
		t.Fatalf("%q: %v", req, st)
	}
	return c, args
}

func TestRuleErrors(t *testing.T) {
	const (
		syntax  = "Syntax error"
		unknown = "Unknown command or category name in ACL"
		exist   = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
		isdir   = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
		nodev   = "The password you are trying to remove from the user does not exist"
		badmsg  = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
		child   = "Allowing first-arg of a subcommand is not supported"
	)
	tests := []struct {
		rules []string
		bad   string // the rule named in the error, "" if valid
		msg   string
	}{
		{[]string{"on", "+get", "~k", "&c", ">p"}, "", ""},
		{[]string{""}, "", ""},
		{[]string{"bogus"}, "bogus", syntax},
		{[]string{"+nosuch"}, "+nosuch", unknown},
		{[]string{"+@nosuch"}, "+@nosuch", unknown},
		{[]string{"-@nosuch"}, "-@nosuch", unknown},
		{[]string{"+@"}, "+@", unknown},
		{[]string{"+"}, "+", unknown},
		{[]string{"-"}, "-", unknown},
		{[]string{"-select|0"}, "-select|0", unknown},
		{[]string{"+client|list|x"}, "+client|list|x", child},
		{[]string{"+get|"}, "+get|", syntax},
		{[]string{"+get|x"}, "", ""},
		{[]string{"+config|"}, "+config|", syntax},
		{[]string{"+config|nosuch"}, "+config|nosuch", unknown},
		{[]string{"+CONFIG|GET"}, "", ""},
		{[]string{"+a|b|c"}, "+a|b|c", unknown},
		{[]string{"~a\tb"}, "~a\tb", syntax},
		{[]string{"&a\x00b"}, "&a", syntax},
		{[]string{"allchannels", "&x"}, "&x", isdir},
		{[]string{"~*", "~a"}, "~a", exist},
		{[]string{"allkeys", "%R~a"}, "%R~a", exist},
		{[]string{"~*", "~*"}, "", ""},
		{[]string{"<nothere"}, "<nothere", nodev},
		{[]string{"#abc"}, "#abc", badmsg},
		{[]string{"!abc"}, "!abc", badmsg},
		{[]string{"!" + sha("x")}, "!" + sha("x"), nodev},
		{[]string{"#" + strings.ToUpper(sha("x"))}, "#" + strings.ToUpper(sha("x")), badmsg},
		{[]string{"%"}, "%", syntax},
		{[]string{"%~x"}, "%~x", syntax},
		{[]string{"%X~x"}, "%X~x", syntax},
		{[]string{"%RR~x"}, "%RR~x", syntax},
		{[]string{"%R"}, "", ""},
		{[]string{"%rw~x"}, "", ""},
		{[]string{"(foo)"}, "(foo)", syntax},
		{[]string{"(on)"}, "(on)", syntax},
		{[]string{"(+get ~a)", "bad"}, "bad", syntax},
		{[]string{"(+get", "~*)", "(~*", "~a)"}, "(~* ~a)", exist},
		{[]string{"()"}, "", ""},
		{[]string{"(\"unbalanced)"}, "", ""},
		{[]string{"reſet"}, "reſet", syntax},
		{[]string{"+ɢet"}, "+ɢet", unknown},
		{[]string{"on\x00junk"}, "", ""},
	}
	for _, tc := range tests {
		_, err := acl.NewUser("u", tc.rules...)
		want := ""
		if tc.bad != "" {
			want = "ERR Error in ACL SETUSER modifier '" + tc.bad + "': " + tc.msg
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("NewUser(%q):\n got %q\nwant %q", tc.rules, got, want)
		}
		// The same rules on an aclfile line, when they have no spaces of their own.
		if !slices.ContainsFunc(tc.rules, func(r string) bool { return strings.ContainsAny(r, " \t\x00") || r == "" }) {
			_, err := acl.Build([]string{"user u " + strings.Join(tc.rules, " ")}, "")
			var be *acl.BuildError
			switch {
			case tc.bad == "" && err != nil:
				t.Errorf("Build(%q): %v", tc.rules, err)
			case tc.bad != "" && (!errors.As(err, &be) || be.Line != 1 ||
				be.Msg != "Error in user declaration '"+shownRule(tc.bad)+"': "+tc.msg):
				t.Errorf("Build(%q): %v", tc.rules, err)
			}
		}
	}
	if _, err := acl.NewUser("u", "(~a", "+get"); err == nil || err.Error() != "ERR Unmatched parenthesis in acl selector starting at '(~a'." {
		t.Errorf("unmatched parenthesis: %v", err)
	}
	if _, err := acl.NewUser("a b"); err == nil {
		t.Error("NewUser with a space in the name")
	}
}

func shownRule(r string) string {
	if r[0] == '<' {
		return "<..."
	}
	return r
}

func TestBuild(t *testing.T) {
	lines := []string{
		"# comment",
		"",
		"   ",
		"user alice on >pw ~k* +get",
		"user bob off",
		"\tuser carol on nopass +@all ~* &*\r",
	}
	us := mustBuild(t, lines...)
	if got := us.Names(); !slices.Equal(got, []string{"alice", "bob", "carol", "default"}) {
		t.Errorf("Names = %q", got)
	}
	if got := us.Default().Describe(); got != "user default on nopass ~* &* +@all" {
		t.Errorf("default: %s", got)
	}
	if got := us.Get("alice").Describe(); got != "user alice on #"+sha("pw")+" ~k* resetchannels -@all +get" {
		t.Errorf("alice: %s", got)
	}
	if got := us.Get("bob").Describe(); got != "user bob off resetchannels -@all" {
		t.Errorf("bob: %s", got)
	}
	if us.Get("nobody") != nil {
		t.Error("Get of an unknown user")
	}
	if got := us.List(); len(got) != 4 || got[0] != us.Get("alice").Describe() {
		t.Errorf("List = %q", got)
	}

	errs := []struct {
		lines []string
		err   string
	}{
		{[]string{"user a on", "", "user a off"}, "line 3: Duplicate user 'a' found"},
		{[]string{"users a"}, "line 1: should start with user keyword followed by the username"},
		{[]string{"user"}, "line 1: should start with user keyword followed by the username"},
		{[]string{"User a"}, "line 1: should start with user keyword followed by the username"},
		{[]string{"user a\tb on"}, "line 1: username 'a\tb' contains invalid characters"},
		{[]string{"user a on (+get ~x"}, "line 1: Unmatched parenthesis in acl selector starting at '(+get'"},
		{[]string{"user a on", "user b on +nosuch"}, "line 2: Error in user declaration '+nosuch': Unknown command or category name in ACL"},
		{[]string{"user default on", "user default off"}, "line 2: Duplicate user 'default' found"},
		{[]string{"user a on <secret"}, "line 1: Error in user declaration '<...': The password you are trying to remove from the user does not exist"},
	}
	for _, tc := range errs {
		_, err := acl.Build(tc.lines, "")
		if err == nil || err.Error() != tc.err {
			t.Errorf("Build(%q) = %v, want %s", tc.lines, err, tc.err)
		}
	}

	// requirepass, and a default line that takes precedence.
	us, err := acl.Build(nil, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if got := us.Default().Describe(); got != "user default on #"+sha("secret")+" ~* &* +@all" {
		t.Errorf("requirepass: %s", got)
	}
	us, err = acl.Build([]string{"user default on nopass +get"}, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if got := us.Default().Describe(); got != "user default on nopass resetchannels -@all +get" {
		t.Errorf("default line: %s", got)
	}
}

func TestAuthenticate(t *testing.T) {
	us := mustBuild(t,
		"user a on >one >two",
		"user b off >one",
		"user c on nopass",
		"user d on #"+sha("hashed"),
		"user e on >one resetpass",
		"user f on >one nopass",
		"user g on nopass >one",
		"user h on >x\x00y",
		"user i on >one >two <one",
	)
	tests := []struct {
		user, pw string
		ok       bool
	}{
		{"a", "one", true}, {"a", "two", true}, {"a", "three", false}, {"a", "", false}, {"a", "One", false},
		{"b", "one", false}, {"c", "", true}, {"c", "anything", true}, {"d", "hashed", true}, {"d", sha("hashed"), false},
		{"e", "one", false}, {"e", "", false}, {"f", "whatever", true}, {"g", "one", true}, {"g", "x", false},
		{"h", "x\x00y", true}, {"h", "x", false}, {"i", "one", false}, {"i", "two", true},
		{"default", "", true},
	}
	for _, tc := range tests {
		if got := us.Get(tc.user).Authenticate([]byte(tc.pw)); got != tc.ok {
			t.Errorf("%s.Authenticate(%q) = %v", tc.user, tc.pw, got)
		}
	}
	if !us.Get("c").NoPass() || us.Get("a").NoPass() || us.Get("b").Enabled() || !us.Get("a").Enabled() {
		t.Error("NoPass or Enabled")
	}
	if n := testing.AllocsPerRun(100, func() { us.Get("a").Authenticate([]byte("two")) }); n != 0 {
		t.Errorf("Authenticate: %v allocations", n)
	}
}

var matchCases = []struct {
	pattern, str string
	want         bool
}{
	{"", "", true}, {"", "a", false}, {"*", "", false}, {"*", "a", true}, {"**", "abc", true},
	{"a*", "a", true}, {"a*", "abc", true}, {"*c", "abc", true}, {"*c", "ab", false}, {"a*c", "ac", true},
	{"a?c", "abc", true}, {"a?c", "ac", false}, {"?", "", false},
	{"[abc]", "b", true}, {"[abc]", "d", false}, {"[^abc]", "d", true}, {"[^abc]", "a", false},
	{"[a-c]", "b", true}, {"[c-a]", "b", true}, {"[a-c]", "d", false}, {"[\\]]", "]", true},
	{"[]", "]", false}, {"[]]", "]", false}, {"[]]", "]]", false}, {"[]]", "a]", false},
	{"[a-]", "-", false}, {"[a-]", "a", true}, {"[a-]", "^", true}, {"[a-]", "]", true},
	{"[", "a", false}, {"[^", "a", true}, {"a[", "a", false}, {"a[b", "ab", true}, {"a[bc", "ac", true},
	{"\\*", "*", true}, {"\\*", "a", false}, {"\\", "\\", true}, {"a\\", "a\\", true}, {"\\?", "?", true},
	{"[\\", "\\", true}, {"[a-", "a", true}, {"[a-", "-", true},
	{"[\x80-\xff]", "\x90", true}, {"[\x80-\xff]", "a", false},
	{"[a-\xff]", "\xff", true}, {"[a-\xff]", "\x80", false}, {"[a-\xff]", "0", true}, {"[a-\xff]", "b", false},
	{"a\x00b", "a\x00b", true}, {"user:[0-9]*", "user:1x", true}, {"user:[0-9]*", "user:x", false},
	{"h*llo", "heeeello", true}, {"*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaa", false},
	{strings.Repeat("*a", 1000), strings.Repeat("a", 1100), true},
	{strings.Repeat("*a", 1001), strings.Repeat("a", 1100), false},
}

func TestMatch(t *testing.T) {
	for _, tc := range matchCases {
		if got := acl.Match(tc.pattern, tc.str); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.str, got)
		}
	}
}

// TestMatchHostile checks that patterns built to backtrack take bounded time.
func TestMatchHostile(t *testing.T) {
	long := strings.Repeat("a", 50000)
	hostile := []string{
		strings.Repeat("*a", 30) + "b",
		strings.Repeat("*?", 50000),
		strings.Repeat("a*", 5000) + "b",
		strings.Repeat("*[a-z]", 2000) + "!",
		strings.Repeat("[", 10000) + "*",
		strings.Repeat("*\\", 10000),
		strings.Repeat("?*", 1000) + strings.Repeat("a", 100) + "b",
	}
	start := time.Now()
	for _, p := range hostile {
		acl.Match(p, long)
		acl.Match(p, long+"b")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hostile patterns took %v", d)
	}
}

func TestCheck(t *testing.T) {
	us := mustBuild(t,
		"user k on nopass ~k* %R~r* %W~w* +@all",
		"user c on nopass resetchannels &ch* &exact +@all",
		"user f on nopass -@all +select|0 +client|list",
		"user s on nopass ~a +get (~b +get) (+set ~c) (%R~d +mget)",
		"user n on nopass -@all",
	)
	tests := []struct {
		user, req string
		d         acl.Denial
		pos       int
		dry       string
	}{
		{"k", "GET k1", acl.Allowed, 0, ""},
		{"k", "GET x", acl.DenyKey, 1, "This user has no permissions to access the 'x' key"},
		{"k", "GET r1", acl.Allowed, 0, ""},
		{"k", "SET r1 v", acl.DenyKey, 1, "This user has no permissions to access the 'r1' key"},
		{"k", "SET w1 v", acl.Allowed, 0, ""},
		{"k", "SET w1 v GET", acl.DenyKey, 1, "This user has no permissions to access the 'w1' key"},
		{"k", "GET w1", acl.DenyKey, 1, ""},
		{"k", "MSET k1 v x v", acl.DenyKey, 3, ""},
		{"k", "ZUNIONSTORE w1 2 r1 r2", acl.Allowed, 0, ""},
		{"k", "ZUNIONSTORE r1 2 r1 r2", acl.DenyKey, 1, ""},
		{"k", "ZUNIONSTORE x +2 r1 w1", acl.DenyKey, 1, ""}, // genericGetKeys order: sources, then destination
		{"k", "PUBLISH x m", acl.DenyChannel, 1, "This user has no permissions to access the 'x' channel"},
		{"k", "EVAL s 0", acl.Allowed, 0, ""},
		{"c", "PUBLISH ch1 m", acl.Allowed, 0, ""},
		{"c", "SUBSCRIBE ch1 x", acl.DenyChannel, 2, ""},
		{"c", "PSUBSCRIBE ch*", acl.Allowed, 0, ""},
		{"c", "PSUBSCRIBE ch1", acl.DenyChannel, 1, ""},
		{"c", "PSUBSCRIBE exact", acl.Allowed, 0, ""},
		{"c", "UNSUBSCRIBE x", acl.Allowed, 0, ""},
		{"c", "SPUBLISH x m", acl.DenyChannel, 1, ""},
		{"c", "GET x", acl.DenyKey, 1, ""},
		{"f", "SELECT 0", acl.Allowed, 0, ""},
		{"f", "SELECT 1", acl.DenyCommand, 0, "This user has no permissions to run the 'select' command"},
		{"f", "CLIENT LIST", acl.Allowed, 0, ""},
		{"f", "CLIENT KILL ID 1", acl.DenyCommand, 0, "This user has no permissions to run the 'client|kill' command"},
		{"f", "AUTH x", acl.Allowed, 0, ""},
		{"f", "HELLO", acl.Allowed, 0, ""},
		{"n", "PING", acl.DenyCommand, 0, ""},
		{"s", "GET a", acl.Allowed, 0, ""},
		{"s", "GET b", acl.Allowed, 0, ""},
		{"s", "GET c", acl.DenyKey, 1, ""},
		{"s", "SET c v", acl.Allowed, 0, ""},
		{"s", "MGET d d", acl.Allowed, 0, ""},
		{"s", "MGET d a", acl.DenyKey, 2, ""},
		{"s", "DEL a", acl.DenyCommand, 0, ""},
	}
	for _, tc := range tests {
		u := us.Get(tc.user)
		c, args := lookup(t, tc.req)
		d, pos := u.Check(c, args)
		if d != tc.d || pos != tc.pos {
			t.Errorf("%s: Check(%s) = %v, %d; want %v, %d", tc.user, tc.req, d, pos, tc.d, tc.pos)
		}
		if tc.dry != "" {
			if got := d.DryRunError(u, c, args, pos); got != tc.dry {
				t.Errorf("%s: DryRunError(%s) = %q", tc.user, tc.req, got)
			}
		}
	}
	get, _ := lookup(t, "GET k")
	sub, _ := lookup(t, "CONFIG GET x")
	for _, tc := range []struct {
		d    acl.Denial
		c    *command.Command
		want string
	}{
		{acl.Allowed, get, ""},
		{acl.DenyCommand, get, "NOPERM this user has no permissions to run the 'get' command"},
		{acl.DenyCommand, sub, "NOPERM this user has no permissions to run the 'config|get' command"},
		{acl.DenyKey, get, "NOPERM this user has no permissions to access one of the keys used as arguments"},
		{acl.DenyChannel, get, "NOPERM this user has no permissions to access one of the channels used as arguments"},
	} {
		if got := tc.d.Error(tc.c); got != tc.want {
			t.Errorf("%v.Error(%s) = %q", tc.d, tc.c.Name, got)
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	us := mustBuild(t,
		"user k on nopass ~k* %R~r* %W~w* &ch* +@all (~x* +get)",
		"user f on nopass -@all +select|0 +get ~*",
	)
	k, f := us.Get("k"), us.Get("f")
	reqs := []string{"GET k1", "GET x1", "GET nope", "MSET k1 v k2 v", "MGET r1 r2 r3", "SET w1 v",
		"PUBLISH ch1 m", "SUBSCRIBE ch1 ch2", "EVAL s 2 k1 k2", "ZUNIONSTORE w1 2 r1 r2", "PING"}
	var cmds []*command.Command
	var argss [][][]byte
	for _, r := range reqs {
		c, a := lookup(t, r)
		cmds, argss = append(cmds, c), append(argss, a)
	}
	sel, selArgs := lookup(t, "SELECT 0")
	n := testing.AllocsPerRun(200, func() {
		for i := range cmds {
			k.Check(cmds[i], argss[i])
		}
		f.Check(sel, selArgs)
	})
	if n != 0 {
		t.Errorf("Check: %v allocations", n)
	}
}

// TestUnrestricted checks that Check allows every request of an unrestricted user, and denies some of
// the users that are nearly so.
func TestUnrestricted(t *testing.T) {
	us := mustBuild(t,
		"user a on nopass ~* &* +@all",
		"user b on nopass allkeys allchannels allcommands",
		"user c on nopass ~* &* -@all +@all",
		"user d on nopass ~* &* +@all -get +get",
		"user e on nopass (~* &* +@all)",
		"user f on nopass %RW~* &* +@all",
		"user g on nopass ~* +@all",
		"user h on nopass ~* &* +@all -@admin",
		"user i on nopass ~* &* +@all (~* &* +@all)",
	)
	want := map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true, "default": true, "i": true}
	rng := rand.New(rand.NewPCG(3, 4))
	reqs := randomLiveRequests(rng, 3000)
	for _, r := range liveRequests {
		reqs = append(reqs, splitReq(r))
	}
	for _, name := range us.Names() {
		u := us.Get(name)
		if u.Unrestricted() != want[name] {
			t.Errorf("%s: Unrestricted = %v", name, u.Unrestricted())
		}
		if !u.Unrestricted() {
			continue
		}
		for _, args := range reqs {
			c, st := command.Lookup(args)
			if st != command.LookupOK {
				continue
			}
			if d, _ := u.Check(c, args); d != acl.Allowed {
				t.Errorf("%s: Check(%q) = %v", name, args, d)
			}
		}
	}
	c, args := lookup(t, "GET ''")
	if d, _ := us.Get("f").Check(c, args); d != acl.DenyKey {
		t.Errorf("%%RW~* and the empty key: %v", d)
	}
}

func TestDescribeInfo(t *testing.T) {
	us := mustBuild(t,
		"user a on >x %R~r %W~w ~rw &c +get +select|0 (~s +set) (&d +@read)",
		"user b +@all -@admin -get +config|get",
	)
	if got, want := us.Get("a").Describe(), "user a on #"+sha("x")+" %R~r %W~w ~rw resetchannels &c -@all +get +select|0 (~s resetchannels -@all +set) (resetchannels &d -@all +@read)"; got != want {
		t.Errorf("Describe:\n got %s\nwant %s", got, want)
	}
	in := us.Get("a").Info()
	want := acl.Info{
		Flags: []string{"on"}, Passwords: []string{sha("x")}, Commands: "-@all +get +select|0",
		Keys: "%R~r %W~w ~rw", Channels: "&c",
		Selectors: []acl.SelectorInfo{{"-@all +set", "~s", ""}, {"-@all +@read", "", "&d"}},
	}
	if !slices.Equal(in.Flags, want.Flags) || !slices.Equal(in.Passwords, want.Passwords) ||
		in.Commands != want.Commands || in.Keys != want.Keys || in.Channels != want.Channels ||
		!slices.Equal(in.Selectors, want.Selectors) {
		t.Errorf("Info:\n got %#v\nwant %#v", in, want)
	}
	if got, want := us.Get("b").Describe(), "user b off resetchannels +@all -@admin +config|get -get"; got != want {
		t.Errorf("Describe:\n got %s\nwant %s", got, want)
	}
	in = us.Default().Info()
	if !slices.Equal(in.Flags, []string{"on", "nopass"}) || len(in.Passwords) != 0 || in.Commands != "+@all" ||
		in.Keys != "~*" || in.Channels != "&*" || len(in.Selectors) != 0 || in.Selectors == nil {
		t.Errorf("default Info: %#v", in)
	}
}

func TestCategories(t *testing.T) {
	want := []string{"keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
		"hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
		"connection", "transaction", "scripting"}
	if got := acl.Categories(); !slices.Equal(got, want) {
		t.Errorf("Categories = %q", got)
	}
	names, ok := acl.CommandsIn("Transaction")
	if !ok || !slices.Equal(names, []string{"discard", "exec", "multi", "unwatch", "watch"}) {
		t.Errorf("CommandsIn(transaction) = %q, %v", names, ok)
	}
	names, _ = acl.CommandsIn("slow")
	if !slices.Contains(names, "config|set") || !slices.Contains(names, "config") {
		t.Errorf("CommandsIn(slow) lacks config or config|set")
	}
}
