package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// proxyBinary builds the proxy once per test run, for tests that measure it as its own process (RSS).
func proxyBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "slotproxy-bin-")
		if err != nil {
			binErr = err
			return
		}
		sharedT.Cleanup(func() { os.RemoveAll(dir) })
		binPath = filepath.Join(dir, "slotproxy")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/slotproxy/slotproxy").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// checkProcessLog fails t for each ERROR line a proxy process logged, as testWriter does for those in this
// process.
func checkProcessLog(t testing.TB, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") {
			proxyErrors.add(line + "\n")
			t.Errorf("the proxy process logged an error: %s", line)
		}
	}
}

// proxyProcess is the proxy running as a process of its own.
type proxyProcess struct {
	Addr string
	cmd  *exec.Cmd
	log  string
}

// startProxyProcess runs the built proxy with the given proxy.yaml lines (listen, seeds and metrics are set
// here) and waits until it serves; it is stopped when the test ends.
func startProxyProcess(t testing.TB, seeds []string, yaml string) *proxyProcess {
	t.Helper()
	bin := proxyBinary(t)
	dir := t.TempDir()
	port := redistest.FreePort(t)
	cfg := filepath.Join(dir, "proxy.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proxyProcess{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: filepath.Join(dir, "proxy.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-config", cfg, "-listen", p.Addr, "-seeds", strings.Join(seeds, ","), "-metrics", "off")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		b, _ := os.ReadFile(p.log)
		checkProcessLog(t, string(b))
	})
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("*3\r\n$3\r\nSET\r\n$10\r\nproc:ready\r\n$1\r\n1\r\n"))
			var line string
			line, err = bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "+OK\r\n" {
				return p
			}
			last = fmt.Sprintf("%q %v", line, err)
		} else {
			last = err.Error()
		}
		select {
		case <-done:
			t.Fatalf("the proxy exited:\n%s", p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy does not serve after 20s (%s):\n%s", last, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RSS is the process's resident memory in bytes.
func (p *proxyProcess) RSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// Log is what the proxy printed so far.
func (p *proxyProcess) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}
