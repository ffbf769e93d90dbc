package backend

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
	"github.com/slotproxy/slotproxy/resp"
)

// The tests in this file run a Pool on a real gnet event loop (see harness_test.go) against fakeredis nodes.
// With two nodes, slot 0 belongs to the first and slot 16383 to the second.

// replyFor is the reply the batch servers give for the key "<kind>:<n>:<tag>". The tag is unique per request,
// so a reply delivered to the wrong request never passes for the right one.
func replyFor(key string) []byte {
	kind, rest, _ := strings.Cut(key, ":")
	ns, tag, _ := strings.Cut(rest, ":")
	n, _ := strconv.Atoi(ns)
	switch kind {
	case "bulk":
		return resp.AppendBulk(nil, fill(n, tag))
	case "array": // nested, with a null inside
		b := resp.AppendArrayHeader(nil, 3)
		b = resp.AppendBulkString(b, tag)
		b = resp.AppendInt(b, int64(n))
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendOK(b)
		return resp.AppendNullBulk(b)
	case "map": // RESP3
		return fmt.Appendf(nil, "%%2\r\n+%s\r\n:%d\r\n+set\r\n~1\r\n_\r\n", tag, n)
	case "null":
		return resp.AppendNullBulk(nil)
	case "int":
		return resp.AppendInt(nil, int64(n))
	case "err":
		return resp.AppendError(nil, "ERR "+tag)
	}
	panic("replyFor: bad key " + key)
}

// fill is n bytes of tag, repeated.
func fill(n int, tag string) []byte {
	b := bytes.Repeat([]byte(tag+"."), n/(len(tag)+1)+1)
	return b[:n]
}

// batchServer answers nothing until it has received n requests, then writes all their replies (replyFor of
// each key) with write.
func batchServer(t *testing.T, n func() int, write func(c *fakeredis.Conn, stream []byte)) *fakeredis.Server {
	var mu sync.Mutex
	var stream []byte
	count := 0
	return fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		mu.Lock()
		stream = append(stream, replyFor(string(args[1]))...)
		count++
		if count < n() {
			mu.Unlock()
			return
		}
		out := stream
		stream, count = nil, 0
		mu.Unlock()
		write(c, out)
	})
}

// batch is one GET per kind ("bulk:100", ...) with keys tagged by batch number and position.
func batch(b int, kinds []string) []*call {
	calls := make([]*call, len(kinds))
	for i, k := range kinds {
		calls[i] = newCall(0, "GET", fmt.Sprintf("%s:b%04di%02d", k, b, i))
	}
	return calls
}

func expectBatch(t *testing.T, calls []*call) {
	t.Helper()
	for _, c := range calls {
		c.expect(t, replyFor(keyOf(c)))
	}
}

// keyOf is the key argument of a call made by batch.
func keyOf(c *call) string {
	var p resp.CommandParser
	args, _, _ := p.Parse(c.Raw)
	return string(args[1])
}

var (
	smallKinds = []string{"bulk:0", "bulk:1", "bulk:100", "array:3", "null:0", "int:42", "err:0", "map:7"}
	splitKinds = []string{"bulk:0", "bulk:1", "bulk:100", "bulk:70000", "array:3", "null:0", "int:-1", "map:7", "err:0"}
)

// TestSplitReplies: however the replies of a pipelined batch are cut into reads, every request gets exactly
// its own reply, and the connection stays up.
func TestSplitReplies(t *testing.T) {
	t.Run("every boundary", func(t *testing.T) {
		// The batch's replies are sent in two writes 1 ms apart, split after byte k, for every k.
		var k atomic.Int64
		srv := batchServer(t, func() int { return len(smallKinds) }, func(c *fakeredis.Conn, stream []byte) {
			cut := min(int(k.Load()), len(stream))
			c.Write(stream[:cut])
			c.Sleep(time.Millisecond)
			c.Write(stream[cut:])
		})
		h := newHarness(t, testConfig(), srv)
		var streamLen int
		for _, c := range batch(0, smallKinds) {
			streamLen += len(replyFor(keyOf(c)))
		}
		for cut := 1; cut < streamLen; cut++ {
			k.Store(int64(cut))
			calls := batch(cut, smallKinds)
			h.send(calls...)
			expectBatch(t, calls)
			if t.Failed() {
				t.Fatalf("split after byte %d of %d", cut, streamLen)
			}
		}
		if srv.Accepted() != 1 {
			t.Errorf("%d connections, want 1", srv.Accepted())
		}
	})

	t.Run("one byte at a time", func(t *testing.T) {
		srv := batchServer(t, func() int { return len(splitKinds) }, func(c *fakeredis.Conn, stream []byte) {
			c.WriteChunks(stream, func() int { return 1 }, 0)
		})
		h := newHarness(t, testConfig(), srv)
		for b := range 2 {
			calls := batch(b, splitKinds)
			h.send(calls...)
			expectBatch(t, calls)
		}
		if srv.Accepted() != 1 {
			t.Errorf("%d connections, want 1", srv.Accepted())
		}
	})

	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seeded chunks/seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed)) // used by the server's one connection goroutine only
			next := func() int {
				switch rng.IntN(4) {
				case 0:
					return 1
				case 1:
					return 1 + rng.IntN(16)
				case 2:
					return 1 + rng.IntN(1024)
				}
				return 1 + rng.IntN(100_000)
			}
			srv := batchServer(t, func() int { return len(splitKinds) }, func(c *fakeredis.Conn, stream []byte) {
				c.WriteChunks(stream, next, 50*time.Microsecond)
			})
			h := newHarness(t, testConfig(), srv)
			for b := range 3 {
				calls := batch(b, splitKinds)
				h.send(calls...)
				expectBatch(t, calls)
			}
			if srv.Accepted() != 1 {
				t.Errorf("%d connections, want 1", srv.Accepted())
			}
		})
	}
}

// TestLargeReplies: replies of 1 MiB and 20 MiB between small ones on the same connection arrive whole and
// in order, written at once or in random pieces.
func TestLargeReplies(t *testing.T) {
	kinds := []string{"bulk:5", "bulk:1048576", "bulk:3", "bulk:20971520", "bulk:0", "array:1", "bulk:1048576", "int:7"}
	for _, tc := range []struct {
		name  string
		write func(c *fakeredis.Conn, stream []byte)
	}{
		{"whole", func(c *fakeredis.Conn, stream []byte) { c.Write(stream) }},
		{"seeded chunks", func(c *fakeredis.Conn, stream []byte) {
			rng := rand.New(rand.NewPCG(7, 7))
			c.WriteChunks(stream, func() int {
				if rng.IntN(8) == 0 {
					return 1 + rng.IntN(3)
				}
				return 1 + rng.IntN(256<<10)
			}, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			n.Store(int64(len(kinds)))
			srv := batchServer(t, func() int { return int(n.Load()) }, tc.write)
			h := newHarness(t, testConfig(), srv)
			calls := batch(0, kinds)
			h.send(calls...)
			expectBatch(t, calls)
			// And one by one, each waiting for the one before.
			n.Store(1)
			for i, k := range kinds {
				c := batch(1+i, []string{k})
				h.send(c...)
				expectBatch(t, c)
			}
			if srv.Accepted() != 1 {
				t.Errorf("%d connections, want 1", srv.Accepted())
			}
		})
	}
}

// TestLargeArrayReply: a large array of small elements costs about what a bulk string of the same size does.
// The event loop is blocked while a reply is gathered, so a reply that costs time quadratic in its size
// stalls every client of the loop: with the Inbox growing by exactly what arrived whenever the scanner only
// needs one more byte (any aggregate in progress), each read copies everything received so far.
func TestLargeArrayReply(t *testing.T) {
	const size = 24 << 20
	n := size / 4
	array := append(resp.AppendArrayHeader(nil, n), bytes.Repeat([]byte(":1\r\n"), n)...)
	blob := resp.AppendBulk(nil, bytes.Repeat([]byte("x"), size))
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[1]) == "array" {
			c.Write(array)
		} else {
			c.Write(blob)
		}
	})
	h := newHarness(t, testConfig(), srv)
	h.warm(t, 0)
	took := func(key string, want []byte) time.Duration {
		c := newCall(0, "GET", key).timeout(30 * time.Second)
		h.send(c)
		_, at := c.wait(t, 30*time.Second)
		c.expect(t, want)
		return at.Sub(c.sent)
	}
	tb := took("bulk", blob)
	ta := took("array", array)
	t.Logf("%d MiB: bulk %v, array of %d integers %v", size>>20, tb, n, ta)
	if limit := 20*tb + 250*time.Millisecond; ta > limit {
		t.Errorf("the array reply took %v, over %v (20x the bulk's %v + 250ms): gathering it is not linear", ta, limit, tb)
	}
}

// TestLargeRequests: requests of bigWrite bytes and more are written from their own memory (Conn.queue),
// between small ones copied into the batch; more of them than maxIOV in one batch fall back to copying. In
// every case the node receives every request whole and in order: queued while dialling, written at once
// on an open connection, and queued behind replies in flight.
func TestLargeRequests(t *testing.T) {
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[1]) == "slow" {
			c.Sleep(50 * time.Millisecond)
		}
		fakeredis.Default(c, args)
	})
	h := newHarness(t, testConfig(), srv)
	sizes := []int{3, bigWrite, 10, bigWrite - 1, 1 << 20, 0, bigWrite + 1}
	for range maxIOV + 10 {
		sizes = append(sizes, bigWrite, 1)
	}
	var want []string // SET keys in the order the node must see them
	mk := func(round string) []*call {
		calls := make([]*call, len(sizes))
		for i, n := range sizes {
			key := fmt.Sprintf("%s:%d", round, i)
			calls[i] = newCall(0, "SET", key, string(fill(n, key)))
			want = append(want, key)
		}
		return calls
	}
	check := func(calls []*call) {
		t.Helper()
		for _, c := range calls {
			c.expect(t, []byte("+OK\r\n"))
		}
	}
	dialling := mk("dialling")
	h.send(dialling...)
	check(dialling)
	open := mk("open")
	h.send(open...)
	check(open)
	slow := newCall(0, "GET", "slow")
	h.send(slow)
	queued := mk("queued")
	h.send(queued...)
	slow.expect(t, []byte("$-1\r\n"))
	check(queued)

	var got []string
	for _, cmd := range srv.Log() {
		if cmd.Name() != "SET" {
			continue
		}
		i := len(got)
		got = append(got, cmd.Args[1])
		if i >= len(want) || cmd.Args[1] != want[i] {
			t.Fatalf("SET number %d is for %q, want %q", i, cmd.Args[1], want[min(i, len(want)-1)])
		}
		if v := fill(sizes[i%len(sizes)], want[i]); len(cmd.Args) != 3 || cmd.Args[2] != string(v) {
			t.Fatalf("SET %s arrived corrupted", want[i])
		}
	}
	if len(got) != len(want) {
		t.Errorf("the node received %d SETs, want %d", len(got), len(want))
	}
	if srv.Accepted() != 1 || srv.ProtocolErrors() != 0 {
		t.Errorf("%d connections, %d protocol errors; want 1 and 0", srv.Accepted(), srv.ProtocolErrors())
	}
}

// TestFlushFull: FlushFull writes the connections with at least min requests queued, keeps the others
// queued and says so, and Flush writes those later; every request is answered once.
func TestFlushFull(t *testing.T) {
	var nodes []*fakeredis.Server
	for range 3 {
		nodes = append(nodes, fakeredis.Start(t, fakeredis.Default))
	}
	h := newHarness(t, testConfig(), nodes...)
	slotOf := func(addr string) int {
		snap := h.topo.snap
		for slot, sh := range snap.Slots {
			if snap.Nodes[snap.Shards[sh].Master].Addr == addr {
				return slot
			}
		}
		t.Fatalf("no slot on %s", addr)
		return -1
	}
	counts := []int{roundTestMin - 1, roundTestMin, roundTestMin + 1}
	var calls []*call
	for _, n := range nodes {
		h.warm(t, slotOf(n.Addr))
	}
	var queued, left []int
	var rest, restAfter bool
	h.onLoop(func() {
		for i, n := range nodes {
			for j := range counts[i] {
				c := newCall(slotOf(n.Addr), "SET", fmt.Sprintf("k%d:%d", i, j), "v")
				calls = append(calls, c)
				h.pool.Send(&c.Request)
			}
			queued = append(queued, h.pool.nodes[n.Addr].conns[0].unsent)
		}
		rest = h.pool.FlushFull(roundTestMin)
		for _, n := range nodes {
			left = append(left, h.pool.nodes[n.Addr].conns[0].unsent)
		}
		restAfter = h.pool.FlushFull(roundTestMin) // nothing new: the small batch still waits
		h.pool.Flush()
	})
	if want := counts; !slices.Equal(queued, want) {
		t.Fatalf("queued %v before FlushFull, want %v", queued, want)
	}
	if want := []int{roundTestMin - 1, 0, 0}; !slices.Equal(left, want) || !rest || !restAfter {
		t.Errorf("after FlushFull(%d): unsent %v (want %v), rest %v then %v (want true)", roundTestMin, left, want,
			rest, restAfter)
	}
	for _, c := range calls {
		c.expect(t, []byte("+OK\r\n"))
	}
}

const roundTestMin = 64
