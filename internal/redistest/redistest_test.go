package redistest

import (
	"context"
	"syscall"
	"testing"
)

func TestClusterStartsAndStops(t *testing.T) {
	var pids []int
	t.Run("start", func(t *testing.T) {
		c := StartCluster(t, ClusterOptions{Masters: 3, Replicas: 1})
		if m := c.Masters(); len(m) != 3 {
			t.Fatalf("%d masters, want 3", len(m))
		}
		slots, err := c.Nodes[0].Client(t).ClusterSlots(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		covered := 0
		for _, s := range slots {
			covered += int(s.End-s.Start) + 1
			if len(s.Nodes) != 2 {
				t.Errorf("slots %d-%d have %d nodes, want master + replica", s.Start, s.End, len(s.Nodes))
			}
		}
		if covered != 16384 {
			t.Errorf("%d slots covered", covered)
		}
		for _, n := range c.Nodes {
			pids = append(pids, n.PID())
		}
	})
	// The subtest's cleanup stopped every process.
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("redis-server %d still runs after the test", pid)
		}
	}
}
