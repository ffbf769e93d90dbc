package acl_test

import (
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/proxy/command"
)

var fuzzRequests = []string{"GET k", "SET k v GET", "MSET a 1 b 2", "ZUNIONSTORE d +2 a b", "EVAL s 1 k",
	"PUBLISH ch m", "PSUBSCRIBE p*", "SUBSCRIBE a b", "SELECT 0", "CONFIG GET x", "CLIENT LIST", "AUTH x",
	"PING", "SORT k STORE d", "GET ''"}

// FuzzRule checks that rules of any content neither panic nor hang, whether ACL SETUSER-style (NewUser,
// With) or on an aclfile line (Build), and that a user without selectors reads back its own ACL LIST line
// into the same user, as ACL SAVE and ACL LOAD rely on.
func FuzzRule(f *testing.F) {
	for _, u := range liveUsers {
		f.Add(u[1])
	}
	for _, s := range []string{"", " ", "(", ")", "()", "(()", "( )", "(\"", "%", "%~", "%R", "~", "&", "+", "-",
		"+@", "+|", "+a|", "+get|\x00", "+select|ſ", "on\x00", "#", "!", ">", "<", "(~a \"b\\x4", "+@all -@all",
		"reset reset", "clearselectors (+get) clearselectors", "~[ ~\\ ~* ~a", "&* &a"} {
		f.Add(s)
	}
	var reqs [][][]byte
	for _, r := range fuzzRequests {
		reqs = append(reqs, splitReq(r))
	}
	f.Fuzz(func(t *testing.T, rules string) {
		words := strings.Split(rules, " ")
		u, err := acl.NewUser("f", words...)
		if err == nil {
			for _, args := range reqs {
				c, _ := command.Lookup(args)
				d, pos := u.Check(c, args)
				_ = d.DryRunError(u, c, args, pos)
				if u.Unrestricted() && d != acl.Allowed {
					t.Fatalf("unrestricted user denied %q", args)
				}
			}
			_ = u.Info()
			_, _ = u.With(words...)
			d := u.Describe()
			// A "%RW~*" pattern among others is described as "~*", which is allkeys when read back: so in Redis.
			keys := " " + u.Info().Keys + " "
			if !strings.ContainsAny(rules, "()\"'\t\r\n\v\f\x00") && (keys == " ~* " || !strings.Contains(keys, " ~* ")) {
				back, err := acl.Build([]string{d}, "")
				if err != nil {
					t.Fatalf("%q: Build(%q): %v", rules, d, err)
				}
				if got := back.Get("f").Describe(); got != d {
					t.Fatalf("%q: Describe %q, read back %q", rules, d, got)
				}
			}
		}
		_, _ = acl.Build([]string{"user f " + rules, rules}, rules)
	})
}

// FuzzMatch checks that matching neither panics nor takes long.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"*", "a"}, {"a*b?c[d-e]\\f", "axbycdf"}, {"[^", "x"}, {"[a-", "-"},
		{"[\\", "\\"}, {"*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{strings.Repeat("*?", 600), strings.Repeat("x", 2000)}, {"[\x80-\xff]", "\xfe"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, str string) {
		start := time.Now()
		acl.Match(pattern, str)
		if d := time.Since(start); d > time.Second && len(pattern)*len(str) < 1e7 {
			t.Fatalf("Match(%q, %q) took %v", pattern, str, d)
		}
	})
}
