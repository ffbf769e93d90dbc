package proxy_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/proxy"
)

// TestRealClients runs real client libraries, each with its default options, through the proxy: commands,
// pipelines, MULTI/EXEC and WATCH with a conflict made by a second client, blocking commands, Pub/Sub,
// scripts, and node-redis with RESP: 3 (proxy/testdata/clients). deploy/test.sh
// installs them: python3-redis from Debian, ioredis and node-redis 5 from npm (package-lock.json).
func TestRealClients(t *testing.T) {
	addr, _, _ := shared(t)
	const dir = "testdata/clients"
	if _, err := os.Stat(dir + "/node_modules/ioredis"); err != nil {
		t.Fatalf("the node clients are not installed (deploy/test.sh runs npm ci in proxy/%s): %v", dir, err)
	}
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"ioredis", []string{"node", "ioredis.js", addr}},
		{"node-redis", []string{"node", "node-redis.js", addr}},
		{"node-redis RESP3", []string{"node", "node-redis-resp3.js", addr}},
		{"redis-py", []string{"/usr/bin/python3", "redis-py.py", addr}}, // Debian's python, with python3-redis
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.cmd[0], c.cmd[1:]...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Errorf("%s: %v\n%s", strings.Join(c.cmd, " "), err, out)
			}
		})
	}
}

// TestGoRedisDefaults: go-redis NewClient with nothing but the address (it asks for RESP3 with HELLO 3 first)
// through the proxy: Pipelined, TxPipelined, Watch with a conflict, Subscribe, Eval, Scan, a blocking pop.
func TestGoRedisDefaults(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	a, b := redis.NewClient(&redis.Options{Addr: addr}), redis.NewClient(&redis.Options{Addr: addr})
	defer a.Close()
	defer b.Close()
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("DEL", a.Del(ctx, "{gr}k", "{gr}n", "{gr}q").Err())
	cmds, err := a.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{gr}k", "v", 0)
		p.Incr(ctx, "{gr}n")
		p.Get(ctx, "{gr}k")
		return nil
	})
	check("Pipelined", err)
	if got := cmds[2].(*redis.StringCmd).Val(); got != "v" {
		t.Errorf("Pipelined GET = %q", got)
	}
	cmds, err = a.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "{gr}n")
		p.Incr(ctx, "{gr}n")
		return nil
	})
	check("TxPipelined", err)
	if got := cmds[1].(*redis.IntCmd).Val(); got != 3 {
		t.Errorf("TxPipelined INCR = %d, want 3", got)
	}
	err = a.Watch(ctx, func(tx *redis.Tx) error {
		check("SET by another client", b.Set(ctx, "{gr}n", 10, 0).Err())
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return p.Incr(ctx, "{gr}n").Err() })
		return err
	}, "{gr}n")
	if err != redis.TxFailedErr {
		t.Errorf("Watch with a conflict: %v, want %v", err, redis.TxFailedErr)
	}
	check("Watch", a.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return p.Incr(ctx, "{gr}n").Err() })
		return err
	}, "{gr}n"))
	if n, err := a.Eval(ctx, "return redis.call('incr', KEYS[1])", []string{"{gr}n"}).Int(); err != nil || n != 12 {
		t.Errorf("Eval = %d, %v; want 12", n, err)
	}
	var keys []string
	iter := a.Scan(ctx, 0, "{gr}*", 10).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	check("Scan", iter.Err())
	if len(keys) != 2 {
		t.Errorf("Scan found %v, want {gr}k and {gr}n", keys)
	}

	ps := a.Subscribe(ctx, "gr:news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	check("PUBLISH", b.Publish(ctx, "gr:news", "hello").Err())
	m, err := ps.ReceiveMessage(ctx)
	if err != nil || m.Payload != "hello" {
		t.Errorf("Subscribe: %v, %v", m, err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		b.RPush(ctx, "{gr}q", "job")
	}()
	if v, err := a.BLPop(ctx, 5*time.Second, "{gr}q").Result(); err != nil || v[1] != "job" {
		t.Errorf("BLPop = %v, %v", v, err)
	}
}

// TestRedisCliRendersLikeRedis: redis-cli prints INFO, SLOWLOG GET and CLIENT LIST from the proxy as it prints
// them from a standalone Redis: the same INFO sections, and the same shape of output once numbers, addresses
// and names are masked (SLOWLOG GET of a SET logged at a threshold of 0; CLIENT LIST of one client).
func TestRedisCliRendersLikeRedis(t *testing.T) {
	_, standalone, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.SlowlogSlowerThan = 0 })
	mustDo(t, standalone.Addr, "CONFIG", "SET", "slowlog-log-slower-than", "0")
	t.Cleanup(func() { mustDo(t, standalone.Addr, "CONFIG", "SET", "slowlog-log-slower-than", "10000") })
	cli := func(a string, args ...string) string {
		t.Helper()
		host, port, _ := net.SplitHostPort(a)
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port, "--no-raw"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v against %s: %v\n%s", args, a, err, out)
		}
		return string(out)
	}
	masked := func(s string) string {
		s = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`).ReplaceAllString(s, "ADDR")
		return regexp.MustCompile(`\d+`).ReplaceAllString(s, "N")
	}
	sections := func(s string) []string { return regexp.MustCompile(`(?m)^# \w+`).FindAllString(s, -1) }
	if p, r := sections(cli(addr, "INFO")), sections(cli(standalone.Addr, "INFO")); !slices.Equal(p, append(r, "# Proxy")) {
		t.Errorf("redis-cli INFO sections: proxy %v, Redis %v", p, r)
	}
	for _, a := range []string{addr, standalone.Addr} {
		cli(a, "SET", "cli:k", "v")
	}
	p, r := masked(cli(addr, "SLOWLOG", "GET", "1")), masked(cli(standalone.Addr, "SLOWLOG", "GET", "1"))
	if p != r || !strings.Contains(p, `"SET"`) {
		t.Errorf("redis-cli SLOWLOG GET 1:\nproxy:\n%s\nRedis:\n%s", p, r)
	}
	// The fresh proxy's only client is redis-cli's connection: its line against Redis's CLIENT INFO of one.
	p = masked(regexp.MustCompile(` lib-name=\S* lib-ver=\S*`).ReplaceAllString(cli(addr, "CLIENT", "LIST"), ""))
	r = masked(cli(standalone.Addr, "CLIENT", "INFO"))
	if strings.Count(p, "\n") != 1 || strings.ReplaceAll(p, "client|list", "CMD") != strings.ReplaceAll(r, "client|info", "CMD") {
		t.Errorf("redis-cli CLIENT LIST:\nproxy: %s\nRedis: %s", p, r)
	}
}

// TestRealClientsWithUser: real clients log in to a proxy that requires it, as an ACL user and, for
// redis-cli, with the default user's password: node-redis (RESP2 and RESP3, credentials in the URL) runs its
// whole script; go-redis with Username/Password runs commands and a pipeline; redis-cli --user --pass and -a
// answer, and without a password redis-cli gets NOAUTH.
func TestRealClientsWithUser(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) {
		c.RequirePass = "def-secret"
		c.Users = []string{"user app on >app-secret ~* &* +@all"}
	})
	const dir = "testdata/clients"
	for _, script := range []string{"node-redis.js", "node-redis-resp3.js"} {
		t.Run(script, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", script, "app:app-secret@"+addr)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Errorf("node %s as app: %v\n%s", script, err, out)
			}
		})
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "app-secret"})
	defer c.Close()
	if who, err := c.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "app" {
		t.Errorf("go-redis as app: ACL WHOAMI %q, %v", who, err)
	}
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{ru}k", "v", 0)
		p.Get(ctx, "{ru}k")
		return nil
	}); err != nil {
		t.Errorf("go-redis pipeline as app: %v", err)
	}
	if err := redis.NewClient(&redis.Options{Addr: addr, Username: "app", Password: "wrong"}).Ping(ctx).Err(); err == nil ||
		!strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("go-redis with a wrong password: %v", err)
	}
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "app", "--pass", "app-secret", "--no-auth-warning", "ACL", "WHOAMI"}, "app"},
		{[]string{"-a", "def-secret", "--no-auth-warning", "ACL", "WHOAMI"}, "default"},
		{[]string{"PING"}, "NOAUTH Authentication required."},
	} {
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, tc.args...)...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("redis-cli %v: %q %v, want %q", tc.args, out, err, tc.want)
		}
	}
}
