package proxy_test

import (
	"context"
	"io"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// p99 of a latency sample.
func p99(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*99/100]
}

// sampleLatency runs n GET+SET pairs from one client and returns each round trip.
func sampleLatency(t *testing.T, c *redis.Client, prefix string, n int) []time.Duration {
	t.Helper()
	ctx := context.Background()
	out := make([]time.Duration, 0, 2*n)
	for i := 0; i < n; i++ {
		k := prefix + string(rune('a'+i%26))
		start := time.Now()
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET during the sample: %v", err)
		}
		out = append(out, time.Since(start))
		start = time.Now()
		if v, err := c.Get(ctx, k).Result(); err != nil || v != "v" {
			t.Fatalf("GET during the sample: %q %v", v, err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// TestSlowReader: a client that pipelines GETs of a 60 KB value as fast as it can and reads none of the
// replies. The proxy stops reading it (its writes block), its RSS stays within the configured output limit
// plus a stated slack, the client is not closed, other clients on the same event loop keep their latency,
// and once the client reads it gets every reply, in order.
func TestSlowReader(t *testing.T) {
	_, _, cl := shared(t)
	const limit = 64 << 20
	p := startProxyProcess(t, cl.Addrs(), "event_loops: 1\nlog_level: warn\nclient_output_buffer_limit:\n  hard: 64mb\n")
	ctx := context.Background()
	other := newClient(p.Addr)
	defer other.Close()
	value := strings.Repeat("s", 60_000)
	if err := other.Set(ctx, "sr:big", value, 0).Err(); err != nil {
		t.Fatal(err)
	}
	sampleLatency(t, other, "sr:warm:", 500)
	before := p99(sampleLatency(t, other, "sr:o:", 2000))
	rssBefore := p.RSS(t)

	slow, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	req := []byte("*2\r\n$3\r\nGET\r\n$6\r\nsr:big\r\n")
	batch := []byte(strings.Repeat(string(req), 1000))
	var sentBytes atomic.Int64
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = slow.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := slow.Write(batch)
			sentBytes.Add(int64(n))
			if err != nil && !isTimeout(err) {
				return
			}
		}
	}()
	sent := func() int64 { return sentBytes.Load() / int64(len(req)) } // requests written whole

	var maxRSS int64
	sampleDone := make(chan []time.Duration)
	go func() { sampleDone <- sampleLatency(t, other, "sr:d:", 2000) }()
	deadline := time.Now().Add(8 * time.Second)
	var during []time.Duration
	for during == nil || time.Now().Before(deadline) {
		select {
		case during = <-sampleDone:
		case <-time.After(100 * time.Millisecond):
		}
		maxRSS = max(maxRSS, p.RSS(t))
	}
	sentStalled := sent()
	time.Sleep(time.Second)
	if grew := sent() - sentStalled; grew > 2000 {
		t.Errorf("the proxy kept reading the stalled client: %d more requests written in a second", grew)
	}
	close(stop)
	<-writerDone

	const slack = 48 << 20
	t.Logf("requests written %d; proxy RSS %d MiB before, %d MiB at most while stalled (bound: +%d MiB limit +%d MiB slack)",
		sent(), rssBefore>>20, maxRSS>>20, limit>>20, slack>>20)
	if maxRSS > rssBefore+limit+slack {
		t.Errorf("proxy RSS reached %d MiB (before %d MiB)", maxRSS>>20, rssBefore>>20)
	}
	during99 := p99(during)
	t.Logf("other client p99: %v before, %v during the stall (%d round trips each)", before, during99, len(during))
	if during99 > 2*before+time.Millisecond {
		t.Errorf("other client p99 %v during the stall, %v before", during99, before)
	}

	// The client was paused, not dropped: its replies come, in order (the first few thousand of them; all would
	// be gigabytes).
	want := "$60000\r\n" + value + "\r\n"
	bc := &bulkConn{t: t, c: slow}
	total := min(sent(), 3000)
	for i := int64(0); i < total; i++ {
		r, err := bc.reply(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d of %d: %v; proxy log:\n%s", i, total, err, p.Log())
		}
		if string(r) != want {
			t.Fatalf("reply %d: %.60q", i, r)
		}
	}
	if strings.Contains(p.Log(), "output buffer limit") {
		t.Errorf("the paused client was closed at the output limit:\n%s", p.Log())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestOutputLimitCloses: a single reply larger than client_output_buffer_limit's hard limit, to a client that
// does not read, closes that client (counted in the metric), as Redis does; others go on.
func TestOutputLimitCloses(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.OutputLimit.Hard = 4 << 20 })
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	ctx := context.Background()
	other := newClient(addr)
	defer other.Close()
	if err := other.Set(ctx, "ol:big", strings.Repeat("o", 32<<20), 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow := dialRaw(t, addr)
	slow.send(resp.AppendCommandStrings(nil, "GET", "ol:big"))
	eventually(t, 5*time.Second, "the client over the hard limit is closed", func() bool {
		return gatherFamilies(t, reg)[`slotproxy_limit_rejections_total{limit="output_buffer"}`] == 1
	})
	// What the kernel had buffered may still arrive, then the connection ends short of the reply.
	_ = slow.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, slow.c)
	if err != nil || n >= 32<<20 {
		t.Errorf("the closed client read %d bytes (%v), want the connection to end short of the 32 MiB reply", n, err)
	}
	if v, err := other.StrLen(ctx, "ol:big").Result(); err != nil || v != 32<<20 {
		t.Errorf("another client after the close: %d %v", v, err)
	}
}
