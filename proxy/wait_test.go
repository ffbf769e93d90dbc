package proxy_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/resp"
)

// TestWaitErrorsLikeStandalone: WAIT's argument errors are Redis's.
func TestWaitErrorsLikeStandalone(t *testing.T) {
	differential(t, split(`
		WAIT x 0
		WAIT 1 x
		WAIT 1 -1
		WAIT 0 -1
		WAIT 1 1.5
		WAIT 0 0
	`))
}

// TestWait: WAIT counts the replicas that have every write made before it, on every shard: 1 in a cluster
// with one replica per master, as soon as they acknowledged for numreplicas 1, after the timeout for 2; 0 for
// a write to a shard whose replica is stopped, after the timeout. A WAIT that waits holds back its own client's next command
// and nobody else's.
func TestWait(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	c := dialRaw(t, addr)
	for i := range 50 {
		c.do("SET", fmt.Sprint("w:", i), "v")
	}
	start := time.Now()
	if got := string(c.do("WAIT", "1", "0")); got != ":1\r\n" {
		t.Errorf("WAIT 1 0 = %q, want :1", got)
	}
	t.Logf("WAIT 1 0 answered after %v", time.Since(start))
	// Replicas acknowledge once a second: a timeout over that sees them all.
	start = time.Now()
	if got := string(c.do("WAIT", "2", "1500")); got != ":1\r\n" {
		t.Errorf("WAIT 2 1500 = %q, want :1 (one replica per master)", got)
	}
	if d := time.Since(start); d < 1400*time.Millisecond || d > 4*time.Second {
		t.Errorf("WAIT 2 1500 answered after %v", d)
	}

	// A pipelined command behind a waiting WAIT waits for it; another client does not.
	w := dialRaw(t, addr)
	w.send(append(resp.AppendCommandStrings(nil, "WAIT", "5", "1500"), resp.AppendCommandStrings(nil, "PING")...))
	other := dialRaw(t, addr)
	start = time.Now()
	for i := range 20 {
		if got := string(other.do("SET", fmt.Sprint("w:o", i), "v")); got != "+OK\r\n" {
			t.Fatalf("SET while another client waits: %q", got)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("another client's SETs took %v while a WAIT waited", d)
	}
	if got := string(w.reply()); got != ":1\r\n" {
		t.Errorf("WAIT 5 1500 = %q", got)
	}
	if got, d := string(w.reply()), time.Since(start); got != "+PONG\r\n" || d < 1400*time.Millisecond {
		t.Errorf("the PING behind WAIT: %q after %v, want +PONG after the WAIT's 1500 ms", got, d)
	}

	// A shard whose replica is stopped: its writes are on no replica.
	snap := snapshotOf(srv)
	replica := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	if err := syscall.Kill(replica.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(replica.PID(), syscall.SIGCONT) })
	time.Sleep(100 * time.Millisecond)
	if got := string(c.do("SET", keyInShard(snap, 0), "v")); got != "+OK\r\n" {
		t.Fatal(got)
	}
	start = time.Now()
	if got := string(c.do("WAIT", "1", "1500")); got != ":0\r\n" {
		t.Errorf("WAIT 1 1500 after a write to the shard whose replica is stopped = %q, want :0", got)
	}
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Errorf("WAIT 1 1500 answered after %v, before its timeout", d)
	}
	_ = syscall.Kill(replica.PID(), syscall.SIGCONT)
}
