package proxy_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLargeValueRepro is the report that opened the large-value work: a 100 KB SET through the proxy, then a
// 200 KB value written on the node directly and read through the proxy. Both used to hang, and the shared
// backend connection with them.
func TestLargeValueRepro(t *testing.T) {
	addr, _, cl := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	c.Options().ReadTimeout = 5 * time.Second

	v100 := strings.Repeat("a", 100_000)
	if err := c.Set(ctx, "lv:100k", v100, 0).Err(); err != nil {
		t.Fatalf("SET of 100 KB: %v", err)
	}
	got, err := c.Get(ctx, "lv:100k").Result()
	if err != nil || got != v100 {
		t.Fatalf("GET of 100 KB: %d bytes, %v", len(got), err)
	}

	v200 := strings.Repeat("b", 200_000)
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer direct.Close()
	if err := direct.Set(ctx, "lv:200k", v200, 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err = c.Get(ctx, "lv:200k").Result()
	if err != nil || !bytes.Equal([]byte(got), []byte(v200)) {
		t.Fatalf("GET of 200 KB written on the node: %d bytes, %v", len(got), err)
	}
}
