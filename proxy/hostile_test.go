package proxy_test

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestSlowloris: 2,000 connections that each send a request one byte a second cannot keep other clients from
// being served; every one of them is still answered correctly once its request is complete.
func TestSlowloris(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.MaxClients = 3000 })
	other := newClient(addr)
	defer other.Close()
	sampleLatency(t, other, "sl:warm:", 300)
	before := p99(sampleLatency(t, other, "sl:b:", 1000))

	const n = 2000
	req := resp.AppendCommandStrings(nil, "ECHO", "slowloris")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// One byte a second on every connection, for all but the last byte of the request.
	stop := make(chan struct{})
	sentPos := 0 // bytes of the request sent on every connection; read after wg.Wait
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for pos := 0; pos < len(req)-1; pos++ {
			sentPos = pos + 1
			for _, c := range conns {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(req[pos : pos+1]); err != nil {
					t.Errorf("slow write: %v", err)
					return
				}
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	var during []time.Duration
	for start := time.Now(); time.Since(start) < 5*time.Second; { // five bytes on every connection
		during = append(during, sampleLatency(t, other, "sl:d:", 200)...)
	}
	close(stop)
	wg.Wait()
	t.Logf("other client p99 %v before, %v with %d slowloris connections (%d round trips)", before, p99(during), n, len(during))
	if p99(during) > 2*before+time.Millisecond {
		t.Errorf("p99 %v with slowloris connections, %v before", p99(during), before)
	}
	// Finish every request at once: all are answered.
	for _, c := range conns {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(req[sentPos:]); err != nil {
			t.Fatal(err)
		}
	}
	want := "$9\r\nslowloris\r\n"
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		got := 0
		for got < len(want) {
			k, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("connection %d: %v after %q", i, err, buf[:got])
			}
			got += k
		}
		if string(buf[:got]) != want {
			t.Fatalf("connection %d: %q", i, buf[:got])
		}
	}
}

// TestMaxClients: past max_clients a connection gets Redis's error and is closed; the others go on and a
// freed place is taken again.
func TestMaxClients(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.MaxClients = 5 })
	var in []*rawConn
	for i := 0; i < 5; i++ {
		c := dialRaw(t, addr)
		if r := string(c.do("SET", fmt.Sprint("mc:", i), "1")); r != "+OK\r\n" {
			t.Fatalf("client %d: %q", i, r)
		}
		in = append(in, c)
	}
	extra := dialRaw(t, addr)
	if r := string(extra.reply()); r != "-ERR max number of clients reached\r\n" {
		t.Errorf("client 6: %q", r)
	}
	if !extra.closed() {
		t.Error("client 6 left open")
	}
	in[0].c.Close()
	eventually(t, 5*time.Second, "a freed place is taken", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(resp.AppendCommandStrings(nil, "GET", "mc:1"))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		return string(buf[:n]) == "$1\r\n1\r\n"
	})
	for i, c := range in[1:] {
		if r := string(c.do("GET", fmt.Sprint("mc:", i+1))); r != "$1\r\n1\r\n" {
			t.Errorf("client %d after the refusal: %q", i+1, r)
		}
	}
}

// TestIdleTimeout: with idle_timeout a silent client is closed, as Redis's timeout does; a client that keeps
// talking is not.
func TestIdleTimeout(t *testing.T) {
	_, _, cl := shared(t)
	addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.IdleTimeout = proxy.Duration(time.Second) })
	idle := dialRaw(t, addr)
	busy := dialRaw(t, addr)
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		if r := string(busy.do("GET", "it:k")); r != "$-1\r\n" {
			t.Fatalf("busy client: %q", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = idle.c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle.r.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("the idle client is still open after 3s with idle_timeout 1s (%v)", err)
	}
}

// TestTCPKeepalive: client connections carry Redis's tcp-keepalive (300 s by default) and none with 0.
func TestTCPKeepalive(t *testing.T) {
	_, _, cl := shared(t)
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{{"default", 300 * time.Second, "keepalive"}, {"off", 0, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startProxy(t, cl.Addrs(), func(c *proxy.Config) { c.TCPKeepalive = proxy.Duration(tc.d) })
			c := dialRaw(t, addr)
			c.do("PING")
			_, port, _ := net.SplitHostPort(addr)
			out, err := exec.Command("ss", "-tnoH", "state", "established", "( sport = :"+port+" )").CombinedOutput()
			if err != nil {
				t.Skipf("ss: %v %s", err, out) // iproute2 missing: nothing to look with
			}
			has := strings.Contains(string(out), "timer:(keepalive")
			if has != (tc.want != "") {
				t.Errorf("tcp_keepalive %v: server socket %q", tc.d, out)
			}
		})
	}
}

// TestMillionArguments: DEL of a million keys spread over every slot is served like Redis (the count of keys
// that existed), and the proxy allocates a small multiple of the request's own size for it (Redis's own argv
// and argument objects take about four times the request).
func TestMillionArguments(t *testing.T) {
	addr, standalone, _ := shared(t)
	const n = 1_000_000
	args := make([]string, 0, n+1)
	args = append(args, "DEL")
	for i := 0; i < n; i++ {
		args = append(args, fmt.Sprintf("ma:%d", i))
	}
	req := resp.AppendCommandStrings(nil, args...)
	set := resp.AppendCommandStrings(nil, "MSET", "ma:1", "a", "ma:500000", "b", "ma:999999", "c")
	var want []byte
	for i, target := range []string{standalone.Addr, addr} {
		c := dialBulk(t, target)
		if err := c.send(set); err != nil {
			t.Fatal(err)
		}
		if r, err := c.reply(10 * time.Second); err != nil || string(r) != "+OK\r\n" {
			t.Fatalf("MSET: %q %v", r, err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		if err := c.send(req); err != nil {
			t.Fatal(err)
		}
		r, err := c.reply(60 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if i == 0 {
			want = r
			t.Logf("redis: %q in %v", r, took)
			continue
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("proxy: %q in %v; %d MiB allocated for a %d MiB request", r, took, alloc>>20, len(req)>>20)
		if string(r) != string(want) {
			t.Errorf("DEL of %d keys: proxy %q, redis %q", n, r, want)
		}
		// Per argument: the slice header and offsets of the parse (32 B), the child request it is copied into
		// and the batch to its node; about 150 B for these 14-byte arguments, nothing that grows faster.
		if alloc > 12*uint64(len(req)) {
			t.Errorf("DEL of %d keys allocated %d MiB for a %d MiB request", n, alloc>>20, len(req)>>20)
		}
		if r := string(dialRaw(t, addr).do("GET", "ma:1")); r != "$-1\r\n" {
			t.Errorf("after the DEL: %q", r)
		}
	}
}
