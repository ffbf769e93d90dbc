package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// aclTestUsers are the users of the ACL tests, in aclfile syntax: the proxy takes them as users:, the
// standalone Redis they are compared with as ACL SETUSER.
var aclTestUsers = []string{
	"user alice on >alicepw ~acl:app:* %R~acl:ro:* %W~acl:wo:* &news.* +@all -flushall -config|set",
	"user bob on >bobpw ~* &* -@all +get +set +ping +acl|whoami +multi +exec",
	"user carol off >carolpw ~* &* +@all",
	"user dave on nopass ~{acl}:* resetchannels +@read +@write -@dangerous",
	"user default on >defpw ~* &* +@all",
}

// aclPair is one connection to the proxy and one to the standalone Redis, for replies compared byte by byte.
type aclPair struct {
	t      *testing.T
	px, rd *rawConn
}

func newACLPair(t *testing.T, proxyAddr, redisAddr string) *aclPair {
	return &aclPair{t: t, px: dialRaw(t, proxyAddr), rd: dialRaw(t, redisAddr)}
}

// same sends args to both and requires the same reply bytes; want, if set, is the reply both must give.
func (p *aclPair) same(want string, args ...string) string {
	p.t.Helper()
	got, redis := p.px.do(args...), p.rd.do(args...)
	if !bytes.Equal(got, redis) {
		p.t.Errorf("%q:\n proxy %q\n redis %q", args, got, redis)
	} else if want != "" && string(got) != want {
		p.t.Errorf("%q: both answer %q, want %q", args, got, want)
	}
	return string(got)
}

// sameWords is same for replies whose order Redis does not fix: the words of both replies (split at spaces
// and line ends) must be the same multiset.
func (p *aclPair) sameWords(args ...string) {
	p.t.Helper()
	words := func(b []byte) []string {
		w := strings.FieldsFunc(string(b), func(r rune) bool { return r == ' ' || r == '\r' || r == '\n' })
		slices.Sort(w)
		return w
	}
	got, redis := p.px.do(args...), p.rd.do(args...)
	if !slices.Equal(words(got), words(redis)) {
		p.t.Errorf("%q:\n proxy %q\n redis %q", args, got, redis)
	}
}

// gone tells whether the peer closed the connection: EOF, or a reset (a server that closes with unread
// input resets), within 2 s.
func (rc *rawConn) gone() bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := rc.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// startACLRedis is a standalone Redis with aclTestUsers (the default user's password set last).
func startACLRedis(t *testing.T) *redistest.Server {
	t.Helper()
	rd := redistest.StartServer(t)
	c := dialRaw(t, rd.Addr)
	for _, line := range aclTestUsers {
		f := strings.Fields(line)
		if got := string(c.do(append([]string{"ACL", "SETUSER"}, f[1:]...)...)); got != "+OK\r\n" {
			t.Fatalf("ACL SETUSER %v: %q", f[1:], got)
		}
	}
	return rd
}

// TestClientACLLikeRedis: the proxy with aclTestUsers answers as a standalone Redis with the same users,
// byte for byte: NOAUTH before AUTH (and what passes before it: unknown commands, arity errors, AUTH, HELLO),
// AUTH and HELLO AUTH with right and wrong passwords and a disabled user, NOPERM for commands, subcommands,
// keys (read-only and write-only patterns) and channels, a split multi-key command with one key denied, a
// denied command inside MULTI, the pre-auth protocol limits, and the read-only ACL subcommands.
func TestClientACLLikeRedis(t *testing.T) {
	_, _, cl := shared(t)
	rd := startACLRedis(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Users = aclTestUsers })
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	before := gatherFamilies(t, reg)

	t.Run("before AUTH", func(t *testing.T) {
		p := newACLPair(t, addr, rd.Addr)
		p.same("-NOAUTH Authentication required.\r\n", "PING")
		p.same("-NOAUTH Authentication required.\r\n", "GET", "acl:k")
		p.same("", "NOSUCHCOMMAND")
		p.same("", "GET")
		p.same("", "CONFIG", "NOSUCH")
		p.same("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "wrong")
		p.same("", "AUTH", "carol", "carolpw") // off
		p.same("", "AUTH", "nobody", "x")
		p.same("", "AUTH", "a", "b", "c")
		p.same("", "HELLO", "3")
		p.same("", "HELLO", "2", "AUTH", "bob", "wrong")
		p.same("", "HELLO", "4", "AUTH", "bob", "bobpw")
		p.same("-NOAUTH Authentication required.\r\n", "ACL", "WHOAMI")
		p.same("+OK\r\n", "AUTH", "defpw")
		p.same("$7\r\ndefault\r\n", "ACL", "WHOAMI")
		p.same("+OK\r\n", "AUTH", "bob", "bobpw")
		p.same("$3\r\nbob\r\n", "ACL", "WHOAMI")
		p.same("", "AUTH", "bob", "wrong") // a failed AUTH keeps the user
		p.same("$3\r\nbob\r\n", "ACL", "WHOAMI")
	})
	t.Run("HELLO AUTH", func(t *testing.T) {
		px, rc := dialRaw(t, addr), dialRaw(t, rd.Addr)
		for _, c := range []*rawConn{px, rc} {
			if got := string(c.do("HELLO", "3", "AUTH", "alice", "alicepw", "SETNAME", "acl-hello")); !strings.HasPrefix(got, "%7\r\n") {
				t.Fatalf("HELLO 3 AUTH: %q", got)
			}
		}
		p := &aclPair{t: t, px: px, rd: rc}
		p.same("$5\r\nalice\r\n", "ACL", "WHOAMI")
		p.same("$9\r\nacl-hello\r\n", "CLIENT", "GETNAME")
	})
	t.Run("alice", func(t *testing.T) {
		p := newACLPair(t, addr, rd.Addr)
		p.same("+OK\r\n", "AUTH", "alice", "alicepw")
		p.same("+OK\r\n", "SET", "acl:app:1", "v")
		p.same("$1\r\nv\r\n", "GET", "acl:app:1")
		p.same("-NOPERM this user has no permissions to access one of the keys used as arguments\r\n", "SET", "acl:other", "v")
		p.same("$-1\r\n", "GET", "acl:ro:1")
		p.same("", "SET", "acl:ro:1", "v")
		p.same("+OK\r\n", "SET", "acl:wo:1", "v")
		p.same("", "GET", "acl:wo:1")
		p.same("", "APPEND", "acl:wo:1", "x") // reads and writes
		p.same("", "MSET", "acl:app:a", "1", "acl:app:b", "2", "acl:other", "3")
		p.same("+OK\r\n", "MSET", "acl:app:a", "1", "acl:app:b", "2")
		p.same("", "MGET", "acl:app:a", "acl:ro:x", "acl:app:b")
		p.same("", "MGET", "acl:app:a", "acl:wo:1")
		p.same("", "DEL", "acl:app:a", "acl:ro:1")
		p.same(":2\r\n", "DEL", "acl:app:a", "acl:app:b")
		p.same("", "COPY", "acl:ro:{c}", "acl:app:{c}")
		p.same("", "COPY", "acl:app:{c}", "acl:ro:{c}")
		p.same("", "FLUSHALL")
		p.same("-NOPERM this user has no permissions to run the 'config|set' command\r\n", "CONFIG", "SET", "maxmemory", "1")
		p.same(":0\r\n", "PUBLISH", "news.today", "m")
		p.same("", "PUBLISH", "sports", "m")
		p.same("", "SUBSCRIBE", "news.a", "sports")
		p.same("", "PSUBSCRIBE", "news.?")
		// Inside MULTI: the denied command is refused when queued and EXEC aborts.
		p.same("+OK\r\n", "MULTI")
		p.same("+QUEUED\r\n", "SET", "acl:app:m", "1")
		p.same("", "SET", "acl:other", "1")
		p.same("", "EXEC")
		p.same("", "PSUBSCRIBE", "news.*")
	})
	t.Run("scripts of a restricted user", func(t *testing.T) {
		// Redis checks what a script runs against the caller; the proxy cannot, so it refuses the script.
		c := dialRaw(t, addr)
		c.do("AUTH", "alice", "alicepw")
		for _, args := range [][]string{{"EVAL", "return redis.call('set', KEYS[1], 'x')", "1", "acl:app:s"},
			{"EVALSHA", "0123456789012345678901234567890123456789", "0"}, {"FCALL", "f", "0"}} {
			if got := string(c.do(args...)); !strings.HasPrefix(got, "-NOPERM scripts and functions run commands the proxy cannot check") {
				t.Errorf("%s by a restricted user: %q", args[0], got)
			}
		}
		d := dialRaw(t, addr)
		d.do("AUTH", "defpw")
		if got := string(d.do("EVAL", "return 1", "0")); got != ":1\r\n" {
			t.Errorf("EVAL by the default user (allowed everything): %q", got)
		}
	})
	t.Run("bob and dave", func(t *testing.T) {
		p := newACLPair(t, addr, rd.Addr)
		p.same("+OK\r\n", "AUTH", "bob", "bobpw")
		p.same("+OK\r\n", "SET", "acl:bob", "1")
		p.same("-NOPERM this user has no permissions to run the 'del' command\r\n", "DEL", "acl:bob")
		p.same("", "CLIENT", "ID")
		p.same("", "INFO")
		p.same("+OK\r\n", "AUTH", "dave", "anything")
		p.same("$-1\r\n", "GET", "{acl}:1")
		p.same("", "GET", "acl:1")
		p.same("", "KEYS", "*")
		p.same("", "PUBLISH", "ch", "m")
	})
	t.Run("pre-auth limits", func(t *testing.T) {
		for _, req := range [][]byte{
			resp.AppendCommandStrings(nil, "SET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"), // 11 arguments
			resp.AppendCommandStrings(nil, "AUTH", strings.Repeat("x", 16385)),
		} {
			p := newACLPair(t, addr, rd.Addr)
			p.px.send(req)
			p.rd.send(req)
			if got, want := p.px.reply(), p.rd.reply(); !bytes.Equal(got, want) {
				t.Errorf("%d-byte request before AUTH: proxy %q, redis %q", len(req), got, want)
			}
			if px, redis := p.px.gone(), p.rd.gone(); !px || !redis {
				t.Errorf("%d-byte request before AUTH: closed: proxy %v, redis %v", len(req), px, redis)
			}
		}
		// Ten arguments and 16384 bytes pass, as in Redis.
		p := newACLPair(t, addr, rd.Addr)
		p.same("", "AUTH", strings.Repeat("x", 16384))
		p.same("", "SET", "a", "1", "b", "2", "c", "3", "d", "4", "e")
	})
	t.Run("ACL subcommands", func(t *testing.T) {
		p := newACLPair(t, addr, rd.Addr)
		p.same("+OK\r\n", "AUTH", "defpw")
		p.same("", "ACL", "USERS")
		// Redis lists single-command rules, and a category's commands, in a hash table's order that changes
		// from one start to the next: those replies are compared as multisets of their words.
		p.sameWords("ACL", "LIST")
		for _, u := range []string{"alice", "bob", "carol", "dave", "default", "nobody"} {
			p.sameWords("ACL", "GETUSER", u)
		}
		p.same("", "ACL", "CAT")
		for _, cat := range []string{"read", "write", "keyspace", "pubsub", "dangerous", "connection", "nosuch"} {
			p.sameWords("ACL", "CAT", cat)
		}
		for _, run := range [][]string{
			{"alice", "get", "acl:app:1"}, {"alice", "set", "acl:ro:1", "v"}, {"alice", "get", "acl:wo:1"},
			{"alice", "flushall"}, {"alice", "publish", "sports", "m"}, {"alice", "config", "set", "a", "b"},
			{"bob", "del", "x"}, {"nobody", "get", "x"}, {"alice", "nosuch"}, {"alice", "get"},
		} {
			p.same("", append([]string{"ACL", "DRYRUN"}, run...)...)
		}
		p.same("", "ACL", "GENPASS", "0")
		p.same("", "ACL", "GENPASS", "x")
		p.same("", "ACL", "CAT", "a", "b")
		if got := string(p.px.do("ACL", "GENPASS", "13")); !strings.HasPrefix(got, "$4\r\n") {
			t.Errorf("ACL GENPASS 13: %q, want 4 hex digits", got)
		}
		if got := string(p.px.do("ACL", "SETUSER", "eve", "on")); !strings.HasPrefix(got, "-ERR ACL SETUSER is not supported by the proxy") {
			t.Errorf("ACL SETUSER: %q", got)
		}
		// ACL LOG: the denials above, newest first, grouped as Redis groups them.
		log := string(p.px.do("ACL", "LOG", "100"))
		for _, want := range []string{"$6\r\nreason\r\n$4\r\nauth\r\n", "$6\r\nobject\r\n$9\r\nacl:other\r\n",
			"$6\r\nobject\r\n$10\r\nconfig|set\r\n", "$6\r\nobject\r\n$6\r\nsports\r\n", "$7\r\ncontext\r\n$5\r\nmulti\r\n"} {
			if !strings.Contains(log, want) {
				t.Errorf("ACL LOG has no %q:\n%s", want, log)
			}
		}
		p.same("+OK\r\n", "ACL", "LOG", "RESET")
		p.same("*0\r\n", "ACL", "LOG")
	})
	after := gatherFamilies(t, reg)
	// AUTH wrong, carol (off), nobody, HELLO 2 AUTH bob wrong, AUTH bob wrong, and the 16384-byte password;
	// HELLO 4 is refused for its version before it authenticates.
	if d := after["slotproxy_auth_failures_total"] - before["slotproxy_auth_failures_total"]; d != 6 {
		t.Errorf("auth_failures_total moved by %v, want 6", d)
	}
	if d := after[`slotproxy_acl_denied_total{reason="key"}`] - before[`slotproxy_acl_denied_total{reason="key"}`]; d < 5 {
		t.Errorf("acl_denied_total{reason=key} moved by %v", d)
	}
}

// percentile is the q quantile of lat (sorted in place).
func percentile(lat []time.Duration, q float64) time.Duration {
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(float64(len(lat))*q))]
}

// TestAuthBruteForce: 10,000 wrong passwords from one client are all refused and counted, while another
// client's GETs keep their latency (p99 compared before and during; logged, and bounded loosely at 2× plus a
// millisecond of scheduling noise on this 2-core machine).
func TestAuthBruteForce(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.RequirePass = "right-one" })
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	user := dialRaw(t, addr)
	if got := string(user.do("AUTH", "right-one")); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	user.do("SET", "brute:k", "v")
	p99 := func(n int) time.Duration {
		lat := make([]time.Duration, n)
		for i := range lat {
			start := time.Now()
			if got := string(user.do("GET", "brute:k")); got != "$1\r\nv\r\n" {
				t.Fatalf("GET during the attack: %q", got)
			}
			lat[i] = time.Since(start)
		}
		return percentile(lat, 0.99)
	}

	quiet := p99(3000)
	attacker, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	var refused atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(attacker)
		var buf []byte
		for i := 0; i < 10000; i += 100 {
			buf = buf[:0]
			for j := i; j < i+100; j++ {
				buf = resp.AppendCommandStrings(buf, "AUTH", fmt.Sprintf("guess-%d", j))
			}
			if _, err := attacker.Write(buf); err != nil {
				return
			}
			for range 100 {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "-WRONGPASS") {
					refused.Add(1)
				}
			}
		}
	}()
	var lat []time.Duration
	for attacking := true; attacking || len(lat) < 1000; {
		select {
		case <-done:
			attacking = false
		default:
		}
		start := time.Now()
		if got := string(user.do("GET", "brute:k")); got != "$1\r\nv\r\n" {
			t.Fatalf("GET during the attack: %q", got)
		}
		lat = append(lat, time.Since(start))
	}
	attacked := percentile(lat, 0.99)
	t.Logf("GET p99 %v quiet, %v during 10,000 wrong AUTHs (%.2fx)", quiet, attacked, float64(attacked)/float64(quiet))
	if n := refused.Load(); n != 10000 {
		t.Errorf("%d of 10,000 wrong passwords refused", n)
	}
	if n := gatherFamilies(t, reg)["slotproxy_auth_failures_total"]; n != 10000 {
		t.Errorf("auth_failures_total = %v, want 10000", n)
	}
	if attacked > 2*quiet+time.Millisecond {
		t.Errorf("GET p99 %v during the attack, %v before", attacked, quiet)
	}
}

// dialFrom connects to addr from the local address from (a second loopback address plays a remote client:
// Redis's protected mode takes only 127.0.0.1 and ::1 as local, as the standalone Redis below shows).
func dialFrom(t *testing.T, from, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// TestProtectedMode: listening on every interface with no password, the proxy refuses a client from
// 127.0.0.2 with the DENIED text a standalone Redis in protected mode sends that same client, byte for byte,
// and closes it; 127.0.0.1 is served. Once a password is set (reload), the same client is served (NOAUTH,
// then AUTH); protected_mode: no serves it without one; a proxy listening on loopback only is not affected.
func TestProtectedMode(t *testing.T) {
	_, _, cl := shared(t)
	rd := redistest.StartServer(t, "--protected-mode", "yes", "--bind", "0.0.0.0")
	denied := dialFrom(t, "127.0.0.2", rd.Addr).do("PING")
	if !strings.HasPrefix(string(denied), "-DENIED Redis is running in protected mode") {
		t.Fatalf("standalone Redis to a client from 127.0.0.2: %q", denied)
	}
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Listen = "0.0.0.0:0" })
	_, port, _ := net.SplitHostPort(addr)
	local := net.JoinHostPort("127.0.0.1", port)
	remote := dialFrom(t, "127.0.0.2", local)
	if got := remote.do("PING"); !bytes.Equal(got, denied) || !remote.gone() {
		t.Errorf("proxy to a client from 127.0.0.2: %q, want Redis's %q and the connection closed", got, denied)
	}
	if got := string(dialRaw(t, local).do("PING")); got != "+PONG\r\n" {
		t.Errorf("proxy to a client from 127.0.0.1: %q", got)
	}
	reload := func(f func(*proxy.Config)) {
		cfg := srv.Config()
		f(&cfg)
		srv.Reload(&cfg)
	}
	reload(func(c *proxy.Config) { c.RequirePass = "pw" })
	remote = dialFrom(t, "127.0.0.2", local)
	if got, auth := string(remote.do("PING")), string(remote.do("AUTH", "pw")); got != "-NOAUTH Authentication required.\r\n" || auth != "+OK\r\n" {
		t.Errorf("with a password, a client from 127.0.0.2: PING %q, AUTH %q", got, auth)
	}
	reload(func(c *proxy.Config) { c.RequirePass, c.ProtectedMode = "", false })
	if got := string(dialFrom(t, "127.0.0.2", local).do("PING")); got != "+PONG\r\n" {
		t.Errorf("protected_mode no, a client from 127.0.0.2: %q", got)
	}
	loopback := startProxy(t, cl.Addrs())
	if got := string(dialFrom(t, "127.0.0.2", loopback).do("PING")); got != "+PONG\r\n" {
		t.Errorf("listening on 127.0.0.1, a client from 127.0.0.2: %q", got)
	}
}

// TestReloadUsers: on reload, a new password applies to the next AUTH while a session authenticated with
// the old one stays; the sessions of a user removed or disabled are closed.
func TestReloadUsers(t *testing.T) {
	_, _, cl := shared(t)
	users := []string{"user ann on >one ~* &* +@all", "user ben on >ben ~* &* +@all", "user cid on >cid ~* &* +@all"}
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Users = users })
	conns := map[string]*rawConn{}
	for _, u := range []string{"ann", "ben", "cid"} {
		conns[u] = dialRaw(t, addr)
		pw := u
		if u == "ann" {
			pw = "one"
		}
		if got := string(conns[u].do("AUTH", u, pw)); got != "+OK\r\n" {
			t.Fatalf("AUTH %s: %q", u, got)
		}
	}
	cfg := srv.Config()
	cfg.Users = []string{"user ann on >two ~* &* +@all", "user ben off >ben ~* &* +@all"} // cid removed
	if changed, _ := srv.Reload(&cfg); !slices.Contains(changed, "users") {
		t.Fatalf("reload changed %v", changed)
	}
	for _, u := range []string{"ben", "cid"} {
		if !conns[u].gone() {
			t.Errorf("the session of %s (disabled or removed) is still open", u)
		}
	}
	if got := string(conns["ann"].do("ACL", "WHOAMI")); got != "$3\r\nann\r\n" {
		t.Errorf("ann's session after the reload: %q", got)
	}
	fresh := dialRaw(t, addr)
	if old, nw := string(fresh.do("AUTH", "ann", "one")), string(fresh.do("AUTH", "ann", "two")); !strings.HasPrefix(old, "-WRONGPASS") || nw != "+OK\r\n" {
		t.Errorf("after the reload AUTH ann with the old password %q, the new one %q", old, nw)
	}
}
