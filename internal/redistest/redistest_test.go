package redistest

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gone reports whether no process has the id any more (a zombie would still count as present, and
// Stop reaps, so there must be none).
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestClusterStartsAndStops(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("start", func(t *testing.T) {
		start := time.Now()
		c := StartCluster(t, ClusterOptions{Masters: 3, Replicas: 1})
		t.Logf("3+3 cluster healthy after %v", time.Since(start))
		masters := c.Masters()
		if len(masters) != 3 {
			t.Fatalf("%d masters, want 3", len(masters))
		}
		for i, m := range masters {
			if m != c.Nodes[i] {
				t.Errorf("master %d is %s, want %s (created first)", i, m.Addr, c.Nodes[i].Addr)
			}
		}
		if r := c.Replicas(); len(r) != 3 {
			t.Errorf("%d replicas, want 3", len(r))
		}
		slots, err := c.Nodes[0].Client(t).ClusterSlots(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		covered := 0
		owners := map[string]bool{}
		for _, s := range slots {
			covered += int(s.End-s.Start) + 1
			owners[s.Nodes[0].Addr] = true
			if len(s.Nodes) != 2 {
				t.Errorf("slots %d-%d have %d nodes, want master + replica", s.Start, s.End, len(s.Nodes))
			}
		}
		if covered != 16384 || len(owners) != 3 {
			t.Errorf("%d slots covered by %d masters, want 16384 by 3", covered, len(owners))
		}
		for _, n := range c.Nodes {
			pids = append(pids, n.PID())
		}
	})
	if len(pids) != 6 {
		t.Fatalf("%d pids", len(pids))
	}
	// The subtest's cleanup stopped every process.
	for _, pid := range pids {
		if pid == 0 || !gone(pid) {
			t.Errorf("redis-server %d still runs after the test", pid)
		}
	}
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := StartServer(t, "--maxmemory", "10mb")
	if got, err := s.DoString("CONFIG", "GET", "maxmemory"); err == nil {
		t.Errorf("CONFIG GET returned a string %q, want an array", got)
	}
	if v, err := s.Do("CONFIG", "GET", "maxmemory"); err != nil || v.([]any)[1] != "10485760" {
		t.Errorf("CONFIG GET maxmemory = %v, %v", v, err)
	}
	if _, err := s.Do("NOSUCHCOMMAND"); err == nil {
		t.Error("an unknown command gave no error")
	} else if _, ok := err.(Error); !ok {
		t.Errorf("error reply is %T, want Error", err)
	}

	pid := s.PID()
	s.Kill()
	if !gone(pid) || s.PID() != 0 || s.Running() {
		t.Fatalf("pid %d after Kill: gone=%v PID()=%d", pid, gone(pid), s.PID())
	}
	s.Kill() // idempotent
	s.Stop()

	s.Restart(t)
	if s.PID() == pid || !s.Running() {
		t.Fatalf("Restart: pid %d (was %d)", s.PID(), pid)
	}
	if v, err := s.Do("CONFIG", "GET", "maxmemory"); err != nil || v.([]any)[1] != "10485760" {
		t.Errorf("after Restart: CONFIG GET maxmemory = %v, %v (options lost?)", v, err)
	}
	pid = s.PID()
	s.Stop()
	if !gone(pid) {
		t.Errorf("pid %d still runs after Stop", pid)
	}
}

func TestStartFailureQuotesLog(t *testing.T) {
	t.Parallel()
	s := &Server{Dir: t.TempDir(), args: []string{"--no-such-option", "1"}}
	s.setPort(FreePort(t))
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	err := s.waitReady(5 * time.Second)
	if err == nil {
		t.Fatal("a server with a bad option started")
	}
	if want := "no-such-option"; !strings.Contains(err.Error(), want) {
		t.Errorf("error does not quote the log (%q missing): %v", want, err)
	}
}

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
