// Package redistest starts real redis-server processes for tests: standalone servers and whole clusters, on
// free loopback ports, stopped by PID when the test ends (also on failure, and if the test binary dies:
// every process gets SIGKILL from the kernel when its parent goes away).
//
// Every server writes its log to <Dir>/redis.log (and its stdout/stderr, where config errors go, to
// <Dir>/stdout.log); start-up failures quote the last lines of both.
package redistest

import (
	"errors"
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

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process. Addr, Port and Dir do not change after the start (Restart reuses them).
type Server struct {
	Addr     string // 127.0.0.1:Port
	Port     int
	BusPort  int    // cluster bus port (cluster nodes only)
	Dir      string // working directory: redis.log, stdout.log, nodes.conf
	Password string // requirepass, if any: used by Do and Client
	TLSPort  int    // the TLS port of a node of a TLS cluster; 0 otherwise
	TLSAddr  string // 127.0.0.1:TLSPort

	args      []string // redis-server options other than port, bus port and paths
	fixedPort bool     // the caller chose Port: never move to another one

	mu   sync.Mutex    // guards cmd and done
	cmd  *exec.Cmd     // nil when stopped
	done chan struct{} // closed when cmd has exited
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{} // ports handed out by FreePort in this process
)

// FreePort returns a loopback TCP port nobody listened on a moment ago, never the same one twice in a
// process. Another process can still take it before the caller binds it; StartServer and StartCluster move to
// other ports when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("FreePort: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] {
			given[p] = true
			return p, nil
		}
	}
	return 0, errors.New("FreePort: the kernel keeps handing out ports already given")
}

// StartServer starts a standalone server (no persistence) and waits until it answers PING. Extra arguments
// are redis-server options: StartServer(t, "--maxmemory", "10mb"). The server is stopped when the test ends.
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := newServer(t, 0, false, extraArgs)
	s.launch(t)
	return s
}

// StartServerOnPort is StartServer on a given port (one FreePort handed out earlier).
func StartServerOnPort(t testing.TB, port int, extraArgs ...string) *Server {
	t.Helper()
	s := newServer(t, port, false, extraArgs)
	s.launch(t)
	return s
}

// newServer prepares a server (port 0: pick one; cluster: also pick a bus port) and registers its Stop
// with the test.
func newServer(t testing.TB, port int, cluster bool, extraArgs []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redistest: redis-server is not in PATH (Debian: apt-get install redis-server redis-tools)")
	}
	s := &Server{Dir: t.TempDir(), fixedPort: port != 0, args: extraArgs}
	if port == 0 {
		port = FreePort(t)
	}
	s.setPort(port)
	if cluster {
		s.BusPort = FreePort(t)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) setPort(port int) {
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func (s *Server) commandLine() []string {
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.BusPort != 0 {
		args = append(args, "--cluster-port", strconv.Itoa(s.BusPort))
	}
	if s.Password != "" {
		args = append(args, "--requirepass", s.Password, "--masterauth", s.Password)
	}
	return append(args, s.args...)
}

// launch starts the process and waits for PING, moving to fresh ports (when the caller did not fix them) if
// another process took one in the meantime. It fails the test otherwise.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		err := s.waitReady(10 * time.Second)
		if err == nil {
			return
		}
		if attempt < 3 && !s.fixedPort && errors.Is(err, errPortInUse) {
			t.Logf("redistest: %s: port taken by someone else, moving", s.Addr)
			s.setPort(FreePort(t))
			if s.BusPort != 0 {
				s.BusPort = FreePort(t)
			}
			continue
		}
		t.Fatal(err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("redistest: %s is already running (pid %d)", s.Addr, s.cmd.Process.Pid)
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command("redis-server", s.commandLine()...)
	cmd.Stdout, cmd.Stderr = out, out
	// Never outlive the test binary, even when it panics or is killed by the test timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	return nil
}

var errPortInUse = errors.New("address already in use")

// waitReady polls PING until it answers or the process exits.
func (s *Server) waitReady(timeout time.Duration) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	var last error
	err := poll(timeout, func() error {
		select {
		case <-done:
			return errExited
		default:
		}
		v, err := s.Do("PING")
		if err == nil && v != "PONG" {
			err = fmt.Errorf("PING = %v", v)
		}
		last = err
		return err
	})
	if err == nil {
		return nil
	}
	tail := s.LogTail(15)
	if errors.Is(err, errExited) {
		s.reap()
		if strings.Contains(tail, "in use") {
			return fmt.Errorf("redistest: redis-server on %s exited: %w\n%s", s.Addr, errPortInUse, tail)
		}
		return fmt.Errorf("redistest: redis-server on %s exited at start; log:\n%s", s.Addr, tail)
	}
	return fmt.Errorf("redistest: redis-server on %s did not answer PING within %v (%v); log:\n%s",
		s.Addr, timeout, last, tail)
}

var errExited = errors.New("process exited")

// reap forgets a process that has exited.
func (s *Server) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		<-s.done
		s.cmd = nil
	}
}

// PID is the process id, 0 when the server is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running tells whether the process was started and has not been stopped or seen to exit.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// LogTail returns the last n lines of the server's log, and of its stdout/stderr if it wrote any.
func (s *Server) LogTail(n int) string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", "redis.log"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, name))
		text := strings.TrimRight(string(data), "\n")
		if text == "" {
			continue
		}
		lines := strings.Split(text, "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s %s (last %d lines)\n%s\n", s.Addr, name, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Stop sends SIGTERM and waits for the process to exit, sending SIGKILL after 5 s. Safe to call again and
// on a server that is not running.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server if it runs, then starts it again on the same port, directory and options (a
// cluster node keeps its nodes.conf, so it rejoins as the node it was) and waits until it answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// Client is a go-redis client for the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { c.Close() })
	return c
}

// poll calls cond until it returns nil or timeout passes; it returns cond's last error then. It sleeps 2 ms
// at first and backs off to 50 ms.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	sleep := 2 * time.Millisecond
	for {
		err := cond()
		if err == nil || errors.Is(err, errExited) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(sleep)
		sleep = min(sleep*2, 50*time.Millisecond)
	}
}

// WaitFor polls cond until it returns nil, failing the test with cond's last error after timeout. Use it
// for eventually-true assertions instead of sleeping.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("%s: still false after %v: %v", what, timeout, err)
	}
}
