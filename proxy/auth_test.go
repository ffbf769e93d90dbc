package proxy_test

import (
	"context"
	"testing"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// TestBackendAuth: the proxy authenticates to password-protected nodes, with the default user's password and
// with an ACL user; its own clients need no password.
func TestBackendAuth(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Password: "s3cret"})
	ctx := context.Background()
	for _, n := range cl.Nodes {
		if err := n.Client(t).Do(ctx, "ACL", "SETUSER", "app", "on", ">apppw", "~*", "&*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, user, pass string }{
		{"requirepass", "", "s3cret"},
		{"acl user", "app", "apppw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.Username, c.Password = tc.user, tc.pass })
			c := newClient(addr)
			defer c.Close()
			for _, k := range []string{"auth:a", "auth:b", "auth:c", "auth:d"} {
				if err := c.Set(ctx, k, tc.name, 0).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
			}
			vals, err := c.MGet(ctx, "auth:a", "auth:b", "auth:c", "auth:d").Result()
			if err != nil || len(vals) != 4 || vals[3] != tc.name {
				t.Fatalf("MGET = %v, %v", vals, err)
			}
		})
	}
}
