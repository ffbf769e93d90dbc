package proxy_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// TestStoppedNode: a master that stops answering (SIGSTOP) costs only the requests for its slots, each a clear
// error at its deadline; the other shards keep their latency; after SIGCONT the node serves again. The cluster
// has no replicas and a long cluster-node-timeout, so nothing fails over meanwhile.
func TestStoppedNode(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, NodeTimeout: 30 * time.Second})
	const timeout = time.Second
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Timeout = proxy.Duration(timeout) })
	snap := snapshotOf(srv)
	stopped := cl.Masters()[0]
	stoppedShard := snap.Slots[firstSlotOf(snap, stopped.Addr)]
	var keyStopped string
	var keysOther []string
	for shard := range snap.Shards {
		k := keyInShard(snap, shard)
		if shard == int(stoppedShard) {
			keyStopped = k
		} else {
			keysOther = append(keysOther, k)
		}
	}
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	otherLatency := func(n int) []time.Duration {
		var d []time.Duration
		for i := 0; i < n; i++ {
			for _, k := range keysOther {
				start := time.Now()
				if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
					t.Fatalf("SET %s (another shard): %v", k, err)
				}
				d = append(d, time.Since(start))
			}
		}
		return d
	}
	otherLatency(200)
	before := p99(otherLatency(1000))

	pid := stopped.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := sync.OnceFunc(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Cleanup(cont)

	stoppedAt := time.Now()
	errc := make(chan error, 1)
	var tookStopped time.Duration
	go func() {
		start := time.Now()
		c2 := newClient(addr)
		defer c2.Close()
		err := c2.Set(ctx, keyStopped, "v", 0).Err()
		tookStopped = time.Since(start)
		errc <- err
	}()
	var during []time.Duration
	for time.Since(stoppedAt) < 3*time.Second {
		during = append(during, otherLatency(50)...)
	}
	err := <-errc
	if err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
		t.Errorf("SET on the stopped node: %v, want an ERR at the deadline", err)
	}
	if tookStopped < timeout-50*time.Millisecond || tookStopped > timeout+500*time.Millisecond {
		t.Errorf("SET on the stopped node answered after %v, want about %v", tookStopped, timeout)
	}
	t.Logf("stopped node: %v after %v; other shards' p99 %v before, %v while it was stopped (%d requests)",
		err, tookStopped, before, p99(during), len(during))
	if p99(during) > 2*before+time.Millisecond {
		t.Errorf("other shards' p99 %v while a node was stopped, %v before", p99(during), before)
	}

	cont()
	contAt := time.Now()
	back := eventually(t, 10*time.Second, "the node serves again after SIGCONT", func() bool {
		return c.Set(ctx, keyStopped, "after", 0).Err() == nil
	})
	if v, err := c.Get(ctx, keyStopped).Result(); err != nil || v != "after" {
		t.Errorf("GET after SIGCONT: %q %v", v, err)
	}
	t.Logf("served again %v after SIGCONT", back.Sub(contAt))
}

// firstSlotOf is a slot the node at addr is master of.
func firstSlotOf(s *topology.Snapshot, addr string) int {
	for slot, sh := range s.Slots {
		if s.Nodes[s.Shards[sh].Master].Addr == addr {
			return slot
		}
	}
	return -1
}

// TestLargeRequestsAndOthers: other clients' requests to the same node share its connection with large values.
// A client uploading a 32 MiB value slowly delays nobody (the proxy forwards a request only once it is whole);
// a client storing 32 MiB values as fast as it can delays them by about the time the node takes to receive
// one, the bound stated below.
func TestLargeRequestsAndOthers(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	small := "lr:{same}:small"
	samples := func(n int) []time.Duration {
		d := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			start := time.Now()
			if err := c.Set(ctx, small, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		return d
	}
	samples(300)
	before := p99(samples(2000))
	value := bytes.Repeat([]byte("L"), 32<<20)
	req := resp.AppendCommand(nil, []byte("SET"), []byte("lr:{same}:big"), value) // same slot, same node

	t.Run("slow upload", func(t *testing.T) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		done := make(chan struct{})
		go func() { // 32 MiB at about 8 MiB/s
			defer close(done)
			for off := 0; off < len(req); off += 256 << 10 {
				if _, err := up.Write(req[off:min(off+256<<10, len(req))]); err != nil {
					return
				}
				time.Sleep(30 * time.Millisecond)
			}
		}()
		var during []time.Duration
		for {
			select {
			case <-done:
				t.Logf("p99 %v before, %v during a slow 32 MiB upload (%d requests)", before, p99(during), len(during))
				if p99(during) > 2*before+time.Millisecond {
					t.Errorf("p99 %v during a slow upload to the same node, %v before", p99(during), before)
				}
				buf := make([]byte, 5)
				_ = up.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := up.Read(buf); err != nil || string(buf) != "+OK\r\n" {
					t.Errorf("the slow upload: %q %v", buf, err)
				}
				return
			default:
				during = append(during, samples(50)...)
			}
		}
	})

	t.Run("fast uploads", func(t *testing.T) {
		const bound = 500 * time.Millisecond
		stop := make(chan struct{})
		done := make(chan int)
		go func() {
			bc := dialBulk(t, addr)
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				if err := bc.send(req); err != nil {
					done <- n
					return
				}
				if r, err := bc.reply(30 * time.Second); err != nil || string(r) != "+OK\r\n" {
					t.Errorf("32 MiB SET: %q %v", r, err)
				}
				n++
			}
		}()
		var during []time.Duration
		for start := time.Now(); time.Since(start) < 5*time.Second; {
			during = append(during, samples(20)...)
		}
		close(stop)
		n := <-done
		worst := during[0]
		for _, d := range during {
			worst = max(worst, d)
		}
		t.Logf("%d SETs of 32 MiB to the same node meanwhile; small requests p99 %v, max %v (%d requests; before: p99 %v)",
			n, p99(during), worst, len(during), before)
		if worst > bound {
			t.Errorf("a small request waited %v behind 32 MiB values, bound %v", worst, bound)
		}
	})
}
