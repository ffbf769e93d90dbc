package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRealClients runs real client libraries, each with its default options, through the proxy: commands,
// pipelines, MULTI/EXEC and WATCH with a conflict made by a second client, and node-redis with RESP: 3
// (proxy/testdata/clients). deploy/test.sh
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
