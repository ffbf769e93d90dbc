// Package redistest starts real redis-server processes for tests: standalone servers and whole clusters, on
// free loopback ports, stopped by PID when the test ends (also on failure, and if the test binary dies).
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	Addr     string
	Port     int
	Dir      string
	Password string // requirepass, if any: used by the helpers that talk to the server

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a loopback TCP port nobody listens on, never the same one twice in a process.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] {
			given[p] = true
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// StartServer starts a standalone server; extra arguments are passed as redis-server options
// ("--maxmemory", "10mb").
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := newServer(t, extraArgs)
	s.start(t)
	s.waitPing(t)
	return s
}

// StartServerOnPort is StartServer on a given port (one FreePort handed out earlier).
func StartServerOnPort(t testing.TB, port int, extraArgs ...string) *Server {
	t.Helper()
	s := newServerOnPort(t, port, extraArgs)
	s.start(t)
	s.waitPing(t)
	return s
}

func newServer(t testing.TB, extraArgs []string) *Server {
	return newServerOnPort(t, FreePort(t), extraArgs)
}

func newServerOnPort(t testing.TB, port int, extraArgs []string) *Server {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed (Debian: apt-get install redis-server redis-tools)")
	}
	dir := t.TempDir()
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, Dir: dir}
	s.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"),
		"--daemonize", "no",
	}, extraArgs...)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command("redis-server", s.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
}

// PID is the process id, 0 when stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) waitPing(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if reply, err := s.do("PING"); err == nil && reply == "PONG" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not answer PING; log:\n%s", s.Addr, s.LogTail(20))
}

// do runs one command over a fresh connection and returns the reply's first line.
func (s *Server) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if s.Password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(s.Password), s.Password)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("AUTH: %q %v", line, err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '-':
		return "", fmt.Errorf("%s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line[1:], nil
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	data, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop sends SIGTERM and waits (SIGKILL after 5 s). Safe to call twice.
func (s *Server) Stop() { s.signal(syscall.SIGTERM, 5*time.Second) }

// Kill sends SIGKILL and waits.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, 5*time.Second) }

func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
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
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the server again with the same port, directory and options.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.start(t)
	s.waitPing(t)
}

// Client is a go-redis client for the server, closed at cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { c.Close() })
	return c
}

// ClusterOptions shape a cluster.
type ClusterOptions struct {
	Masters     int           // default 3
	Replicas    int           // per master
	NodeTimeout time.Duration // cluster-node-timeout, default 2s
	Password    string        // requirepass and masterauth of every node
	ExtraArgs   []string
}

// Cluster is a running Redis Cluster.
type Cluster struct {
	Nodes    []*Server // in creation order: masters first
	replicas int       // per master, as created
}

// StartCluster starts the nodes, creates the cluster with redis-cli --cluster create and waits until every
// node agrees on a full slot map with every replica attached.
func StartCluster(t testing.TB, opt ClusterOptions) *Cluster {
	t.Helper()
	if opt.Masters == 0 {
		opt.Masters = 3
	}
	if opt.NodeTimeout == 0 {
		opt.NodeTimeout = 2 * time.Second
	}
	n := opt.Masters * (1 + opt.Replicas)
	c := &Cluster{replicas: opt.Replicas}
	for i := 0; i < n; i++ {
		busPort := FreePort(t)
		args := append([]string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(opt.NodeTimeout.Milliseconds())),
			"--cluster-port", strconv.Itoa(busPort),
			"--repl-diskless-sync-delay", "0", // replicas sync at once, not after 5 s
		}, opt.ExtraArgs...)
		if opt.Password != "" {
			args = append(args, "--requirepass", opt.Password, "--masterauth", opt.Password)
		}
		s := newServer(t, args)
		s.Password = opt.Password
		s.start(t)
		c.Nodes = append(c.Nodes, s)
	}
	for _, s := range c.Nodes {
		s.waitPing(t)
	}
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", strconv.Itoa(opt.Replicas), "--cluster-yes")
	if opt.Password != "" {
		create = append(create, "-a", opt.Password, "--no-auth-warning")
	}
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 30*time.Second)
	return c
}

// Addrs lists every node's address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// WaitHealthy waits until every running node says cluster_state:ok and all agree on the masters and on the
// number of connected replicas.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if last = c.health(); last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("cluster not healthy after %v: %s", timeout, last)
}

// health is "" when the cluster is healthy, else what is wrong.
func (c *Cluster) health() string {
	var view string
	for _, s := range c.Nodes {
		if s.PID() == 0 {
			continue
		}
		info, err := s.do("CLUSTER", "INFO")
		if err != nil {
			return fmt.Sprintf("%s: %v", s.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Sprintf("%s: cluster_state not ok", s.Addr)
		}
		nodes, err := s.do("CLUSTER", "NODES")
		if err != nil {
			return fmt.Sprintf("%s: %v", s.Addr, err)
		}
		v := summarize(nodes)
		if view != "" && v != view {
			return fmt.Sprintf("nodes disagree: %q vs %q", view, v)
		}
		view = v
	}
	// CLUSTER SLOTS lists a replica only once it has synced: wait for that too.
	for _, s := range c.Nodes {
		if s.PID() == 0 {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
		slots, err := cl.ClusterSlots(context.Background()).Result()
		cl.Close()
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER SLOTS: %v", s.Addr, err)
		}
		for _, r := range slots {
			if len(r.Nodes) < 1+c.replicas {
				return fmt.Sprintf("%s: slots %d-%d served by %d nodes", s.Addr, r.Start, r.End, len(r.Nodes))
			}
		}
		break
	}
	return ""
}

// summarize reduces CLUSTER NODES to "master-addr:replica-count" for each master holding slots, skipping
// failed nodes, so that two nodes' views can be compared.
func summarize(nodes string) string {
	type node struct{ id, addr, flags, master, slots string }
	var all []node
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := node{id: f[0], addr: addr, flags: f[2], master: f[3]}
		if len(f) > 8 {
			n.slots = strings.Join(f[8:], " ")
		}
		all = append(all, n)
	}
	var parts []string
	for _, m := range all {
		if !strings.Contains(m.flags, "master") || m.slots == "" || strings.Contains(m.flags, "fail") {
			continue
		}
		replicas := 0
		for _, r := range all {
			if r.master == m.id && !strings.Contains(r.flags, "fail") {
				replicas++
			}
		}
		parts = append(parts, fmt.Sprintf("%s=%s:%d", m.addr, m.slots, replicas))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Masters returns the running servers that are masters now, by asking them.
func (c *Cluster) Masters() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if s.PID() == 0 {
			continue
		}
		if info, err := s.do("INFO", "replication"); err == nil && strings.Contains(info, "role:master") {
			out = append(out, s)
		}
	}
	return out
}
