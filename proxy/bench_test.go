package proxy_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/resp"
)

// benchPipeline sends the same pipeline of GETs through the running proxy b.N/len times. The client side
// allocates nothing, so allocs/op is the proxy's own cost per command (parse → route → backend → reply).
func benchPipeline(b *testing.B, depth int) {
	addr, _, _ := shared(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var req []byte
	for i := 0; i < depth; i++ {
		req = resp.AppendCommandStrings(req, "GET", fmt.Sprintf("bench:%d", i))
	}
	want := depth * len("$-1\r\n") // the keys do not exist
	buf := make([]byte, want)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ { // warm the pools: connections, request free lists, buffers
		roundTrip()
	}
	time.Sleep(50 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		roundTrip()
	}
}

func BenchmarkProxyGET(b *testing.B)           { benchPipeline(b, 1) }
func BenchmarkProxyGETPipeline16(b *testing.B) { benchPipeline(b, 16) }
