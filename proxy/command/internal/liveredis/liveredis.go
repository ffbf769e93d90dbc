// Package liveredis starts a throwaway redis-server and talks RESP2 to it. It serves the table generator
// (internal/gen) and the command package's tests, which compare the table with a real server; it is not
// for the proxy itself.
package liveredis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Server is one redis-server process on a loopback port, with persistence off.
type Server struct {
	Addr string // 127.0.0.1:port

	cmd  *exec.Cmd
	out  *bytes.Buffer // the server's stdout and stderr
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result; read only after done is closed
}

// Start runs bin (a redis-server path or name) on a free port, with its working directory in dir and the
// further options extra ("--cluster-enabled", "yes", ...), and waits until it answers PING. The port is
// taken with net.Listen on 127.0.0.1:0 and released just before the server binds it; if the server exits
// at once (another process took the port, or the cluster bus port), Start tries again on another port.
func Start(bin, dir string, extra ...string) (*Server, error) {
	var last error
	for range 5 {
		s, err := start(bin, dir, extra)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

func start(bin, dir string, extra []string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: new(bytes.Buffer), done: make(chan struct{})}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir}, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	dieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited early (%v): %s", bin, s.err, lastLines(s.out.String(), 5))
		default:
		}
		if c, err := Dial(s.Addr); err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return nil, fmt.Errorf("%s on %s did not answer PING in 10s: %s", bin, s.Addr, lastLines(s.out.String(), 5))
}

// Stop kills the server by its PID and waits for it to exit. It may be called more than once.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Error is an error reply from the server, without the leading '-'.
type Error string

func (e Error) Error() string { return string(e) }

// Conn is one RESP2 connection. Replies are decoded as string (simple and bulk strings), int64, []any,
// nil (null bulk or array) or Error.
type Conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// Timeout bounds every Flush and Receive.
const Timeout = 10 * time.Second

// Dial connects to addr.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Send buffers one command; Flush writes the buffer.
func (c *Conn) Send(args ...[]byte) error {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n", len(a))
		c.w.Write(a)
		c.w.WriteString("\r\n")
	}
	return nil
}

// Flush writes what Send buffered.
func (c *Conn) Flush() error {
	c.c.SetWriteDeadline(time.Now().Add(Timeout))
	return c.w.Flush()
}

// Receive reads one reply. An error reply is returned as the value (an Error), not as err: err is only for
// I/O and protocol failures.
func (c *Conn) Receive() (any, error) {
	c.c.SetReadDeadline(time.Now().Add(Timeout))
	return read(c.r)
}

// Do sends one command and reads its reply; an error reply is returned as err (an Error).
func (c *Conn) Do(args ...string) (any, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	c.Send(b...)
	if err := c.Flush(); err != nil {
		return nil, err
	}
	v, err := c.Receive()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(Error); ok {
		return nil, e
	}
	return v, nil
}

func read(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line, ok := strings.CutSuffix(line, "\r\n")
	if !ok || line == "" {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return Error(line[1:]), nil
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, n)
		for range n {
			v, err := read(r)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, errors.New("bad reply type in " + strconv.Quote(line))
}

// TempDir makes a directory for a server started outside a test; the caller removes it.
func TempDir() (string, error) { return os.MkdirTemp("", "liveredis-") }
