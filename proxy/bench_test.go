package proxy_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/resp"
)

// pipelineRoundTrip returns a function that sends the same pipeline of depth GETs of absent keys through
// the proxy at addr and reads the replies, allocating nothing itself; the pools are warmed first. With resp3
// the connection says HELLO 3 first (absent keys answer "_").
func pipelineRoundTrip(t testing.TB, addr string, depth int, resp3 bool) func() {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	null := "$-1\r\n"
	if resp3 {
		null = "_\r\n"
		hello := make([]byte, 1<<10)
		if _, err := c.Write(resp.AppendCommandStrings(nil, "HELLO", "3")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(hello); err != nil || hello[0] != '%' {
			t.Fatalf("HELLO 3: %q, %v", hello[:n], err)
		}
	}
	var req []byte
	for i := 0; i < depth; i++ {
		req = resp.AppendCommandStrings(req, "GET", fmt.Sprintf("bench:%d", i))
	}
	return requestRoundTrip(t, c, req, depth*len(null))
}

// requestRoundTrip returns a function that sends req on c and reads replyLen bytes of replies, allocating
// nothing itself, after warming the proxy's pools.
func requestRoundTrip(t testing.TB, c net.Conn, req []byte, replyLen int) func() {
	buf := make([]byte, replyLen)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ { // warm the pools: connections, request free lists, buffers
		roundTrip()
	}
	return roundTrip
}

// benchPipeline sends the same pipeline of GETs through the running proxy b.N/len times. The client side
// allocates nothing, so allocs/op is the proxy's own cost per command (parse → route → backend → reply).
func benchPipeline(b *testing.B, depth int, resp3 bool) {
	addr, _, _ := shared(b)
	roundTrip := pipelineRoundTrip(b, addr, depth, resp3)
	time.Sleep(50 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		roundTrip()
	}
}

func BenchmarkProxyGET(b *testing.B)                { benchPipeline(b, 1, false) }
func BenchmarkProxyGETPipeline16(b *testing.B)      { benchPipeline(b, 16, false) }
func BenchmarkProxyGETResp3(b *testing.B)           { benchPipeline(b, 1, true) }
func BenchmarkProxyGETPipeline16Resp3(b *testing.B) { benchPipeline(b, 16, true) }

// msetRoundTrip returns a function that sends one MSET of 10 keys in 10 slots (redis-benchmark's MSET test)
// and reads its +OK.
func msetRoundTrip(t testing.TB, addr string) func() {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	args := []string{"MSET"}
	for i := 0; i < 10; i++ {
		args = append(args, fmt.Sprintf("bench:mset:%d", i), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
	}
	return requestRoundTrip(t, c, resp.AppendCommandStrings(nil, args...), len("+OK\r\n"))
}

// BenchmarkProxyMSET10: the fan-out path, split into 10 parts and merged.
func BenchmarkProxyMSET10(b *testing.B) {
	addr, _, _ := shared(b)
	roundTrip := msetRoundTrip(b, addr)
	time.Sleep(50 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
}

// TestProxyPathAllocs: in the steady state the whole parse → route → backend → reply path allocates nothing,
// in RESP2 and in RESP3.
// The count is the whole process's (the client allocates nothing), so the slot-map refresh and timers that
// may run meanwhile are in it too: the bound is half an allocation per request, where one allocation per
// request would be a regression.
func TestProxyPathAllocs(t *testing.T) {
	addr, _, _ := shared(t)
	for _, resp3 := range []bool{false, true} {
		for _, depth := range []int{1, 16} {
			roundTrip := pipelineRoundTrip(t, addr, depth, resp3)
			perRequest := testing.AllocsPerRun(2000/depth, roundTrip) / float64(depth)
			t.Logf("pipeline of %d GETs, RESP3 %v: %.3f allocations per request", depth, resp3, perRequest)
			if perRequest > 0.5 {
				t.Errorf("pipeline of %d GETs, RESP3 %v: %.2f allocations per request, want 0", depth, resp3, perRequest)
			}
		}
	}
	perMSET := testing.AllocsPerRun(2000, msetRoundTrip(t, addr))
	t.Logf("MSET of 10 keys in 10 slots: %.3f allocations per command", perMSET)
	if perMSET > 0.5 {
		t.Errorf("MSET of 10 keys in 10 slots: %.2f allocations per command, want 0", perMSET)
	}
}
