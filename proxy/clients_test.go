package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
