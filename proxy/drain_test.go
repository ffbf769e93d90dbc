package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

// TestDrainOnSIGTERM: a client has 1,000 requests in flight (a BLPOP that blocks for 1.5 s, then 999
// SETs behind it) when the proxy gets SIGTERM. /readyz turns 503 "shutting down", a new client is answered
// "-ERR the proxy is shutting down" and closed, the first client gets all 1,000 replies in order, and the
// proxy exits 0 as soon as it has, well before drain_timeout.
func TestDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, _, cl := shared(t)
	addr, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	p := runBinary(t, fmt.Sprintf("listen: %s\nmetrics: %s\nseeds: [%s]\nevent_loops: 2\ndrain_timeout: 20s\n",
		addr, metricsAddr, strings.Join(cl.Addrs(), ", ")))
	p.waitServes(t, addr)
	expectHTTP(t, "http://"+metricsAddr+"/readyz", http.StatusOK, "ok\n")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var req strings.Builder
	req.WriteString("*3\r\n$5\r\nBLPOP\r\n$11\r\ndrain:empty\r\n$3\r\n1.5\r\n")
	for i := range 999 {
		k, v := fmt.Sprintf("drain:%d", i), fmt.Sprint(i)
		fmt.Fprintf(&req, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	if _, err := c.Write([]byte(req.String())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, 2*time.Second, "/readyz 503 while draining", func() error {
		code, body, _, err := httpGet("http://" + metricsAddr + "/readyz")
		if err != nil || code != http.StatusServiceUnavailable || body != "shutting down\n" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if got, _, err := rawDo(addr, 2*time.Second, "PING"); err != nil || string(got) != "-ERR the proxy is shutting down\r\n" {
		t.Errorf("a new client while draining: %q, %v", got, err)
	}

	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "*-1\r\n" {
		t.Fatalf("BLPOP answered %q, %v; want a nil array after its timeout", line, err)
	}
	for i := range 999 {
		if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
			t.Fatalf("SET %d answered %q, %v", i, line, err)
		}
	}
	answered := time.Since(signalled)
	if _, err := r.ReadByte(); err == nil {
		t.Error("more than 1,000 replies")
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not exit after its last client was answered")
	}
	exited := time.Since(signalled)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0:\n%s", code, p.Log())
	}
	t.Logf("SIGTERM with 1,000 requests in flight: all answered %v after it, the proxy exited after %v", answered, exited)
	if exited > 5*time.Second {
		t.Errorf("exited %v after SIGTERM, want soon after the last reply (drain_timeout is 20 s)", exited)
	}
	other := dialRaw(t, startProxy(t, cl.Addrs()))
	for _, i := range []int{0, 500, 998} {
		if got := string(other.do("GET", fmt.Sprintf("drain:%d", i))); got != fmt.Sprintf("$%d\r\n%d\r\n", len(fmt.Sprint(i)), i) {
			t.Errorf("drain:%d = %q after the drain", i, got)
		}
	}
}

// TestPprof: with pprof: true the metrics address serves net/http/pprof; without it, /debug/pprof/ is 404.
func TestPprof(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	_, _, cl := shared(t)
	for _, on := range []bool{true, false} {
		addr, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
		p := runBinary(t, fmt.Sprintf("listen: %s\nmetrics: %s\nseeds: [%s]\npprof: %v\n", addr, metricsAddr,
			strings.Join(cl.Addrs(), ", "), on))
		p.waitServes(t, addr)
		code, body, _, err := httpGet("http://" + metricsAddr + "/debug/pprof/")
		switch {
		case err != nil:
			t.Fatal(err)
		case on && (code != http.StatusOK || !strings.Contains(body, "goroutine")):
			t.Errorf("pprof on: %d %.200q", code, body)
		case !on && code != http.StatusNotFound:
			t.Errorf("pprof off: /debug/pprof/ answered %d", code)
		}
		if on {
			code, body, _, _ := httpGet("http://" + metricsAddr + "/debug/pprof/goroutine?debug=1")
			if code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
				t.Errorf("goroutine profile: %d %.200q", code, body)
			}
		}
	}
}
