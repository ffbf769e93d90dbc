package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestNonIdempotentNotReplayed: a node that runs a command and then drops the connection before its reply
// leaves the proxy not knowing whether the command ran. A write that is not idempotent (here an EVAL that
// INCRs) is answered "may or may not have run" and never resent: the counter is 1. A read pipelined behind it
// on the same connection is resent and answered. The node drops the connection itself, deterministically: its
// client-output-buffer-limit is below the EVAL's reply.
func TestNonIdempotentNotReplayed(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.Timeout = proxy.Duration(3 * time.Second) })
	ctx := context.Background()
	const key = "replay:{n}"
	var node *redistest.Server // the master that owns key: the others answer MOVED
	for _, m := range cl.Masters() {
		if err := m.Client(t).Get(ctx, key).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
			node = m
		}
	}
	if node == nil {
		t.Fatal("no master owns", key)
	}
	px := dialRaw(t, addr)
	if got := string(px.do("SET", "replay:{n}v", "kept")); got != "+OK\r\n" {
		t.Fatal(got)
	}
	if err := node.Client(t).ConfigSet(ctx, "client-output-buffer-limit", "normal 65536 0 0").Err(); err != nil {
		t.Fatal(err)
	}
	script := "redis.call('INCR', KEYS[1]) return string.rep('x', 200000)"
	px.send(append(resp.AppendCommandStrings(nil, "EVAL", script, "1", key),
		resp.AppendCommandStrings(nil, "GET", "replay:{n}v")...))
	want := fmt.Sprintf("-ERR connection to %s lost before the reply; the command may or may not have run\r\n", node.Addr)
	if got := string(px.reply()); got != want {
		t.Errorf("EVAL whose reply the node dropped = %q, want %q", got, want)
	}
	if got := string(px.reply()); got != "$4\r\nkept\r\n" {
		t.Errorf("GET behind it on the same connection = %q, want the value", got)
	}
	if err := node.Client(t).ConfigSet(ctx, "client-output-buffer-limit", "normal 0 0 0").Err(); err != nil {
		t.Fatal(err)
	}
	if got := string(px.do("GET", key)); got != "$1\r\n1\r\n" {
		t.Errorf("the counter is %q after one EVAL: it was replayed", got)
	}
}
