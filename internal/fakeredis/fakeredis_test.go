package fakeredis

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/resp"
)

func dial(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	return nc, bufio.NewReader(nc)
}

// roundTrip sends one command and reads exactly len(want) bytes back.
func roundTrip(t *testing.T, nc net.Conn, r *bufio.Reader, want string, args ...string) {
	t.Helper()
	if _, err := nc.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("%q: read: %v (got %q)", args, err, got)
	}
	if string(got) != want {
		t.Fatalf("%q = %q, want %q", args, got, want)
	}
}

func TestDefault(t *testing.T) {
	s := Start(t, nil)
	nc, r := dial(t, s)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"GET", "k"}, "$-1\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"get", "k"}, "$1\r\nv\r\n"},
		{[]string{"ASKING"}, "+OK\r\n"},
		{[]string{"READONLY"}, "+OK\r\n"},
		{[]string{"DEL", "k", "x"}, ":1\r\n"},
		{[]string{"NOPE", "a"}, "-ERR unknown command 'NOPE', with args beginning with: 'a' \r\n"},
	} {
		roundTrip(t, nc, r, tc.want, tc.args...)
	}
	if got := s.Requests(); got != 8 {
		t.Errorf("Requests() = %d, want 8", got)
	}
	if log := s.Log(); len(log) != 8 || log[3].Name() != "GET" || log[3].Conn != 1 {
		t.Errorf("Log() = %v", log)
	}
}

func TestRequirePass(t *testing.T) {
	s := Start(t, nil)
	s.RequirePass("", "pa*ss")
	nc, r := dial(t, s)
	roundTrip(t, nc, r, "-NOAUTH Authentication required.\r\n", "GET", "k")
	roundTrip(t, nc, r, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", "AUTH", "nope")
	roundTrip(t, nc, r, "+OK\r\n", "AUTH", "pa*ss")
	roundTrip(t, nc, r, "$-1\r\n", "GET", "k")
}

func TestScripted(t *testing.T) {
	s := Start(t, func(c *Conn, args [][]byte) {
		switch string(args[1]) {
		case "split":
			c.WriteChunks([]byte("$5\r\nhello\r\n"), func() int { return 1 }, time.Millisecond)
		case "twice":
			c.OK()
			c.OK()
		case "moved":
			c.Moved(42, "127.0.0.1:1")
		case "close":
			c.Close()
		}
	})
	nc, r := dial(t, s)
	roundTrip(t, nc, r, "$5\r\nhello\r\n", "GET", "split")
	roundTrip(t, nc, r, "+OK\r\n+OK\r\n", "GET", "twice")
	roundTrip(t, nc, r, "-MOVED 42 127.0.0.1:1\r\n", "GET", "moved")
	if _, err := nc.Write(resp.AppendCommandStrings(nil, "GET", "close")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after Close: read err = %v, want EOF", err)
	}
	if s.Accepted() != 1 {
		t.Errorf("Accepted() = %d, want 1", s.Accepted())
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Open() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s.Open() != 0 {
		t.Errorf("Open() = %d after the server closed the connection, want 0", s.Open())
	}
}

func TestProtocolError(t *testing.T) {
	s := Start(t, nil)
	nc, r := dial(t, s)
	if _, err := nc.Write([]byte("*1\r\n+PING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, _ := r.ReadString('\n')
	if line != "-ERR Protocol error: expected '$', got '+'\r\n" {
		t.Errorf("reply = %q", line)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("read err = %v, want EOF", err)
	}
	if s.ProtocolErrors() != 1 {
		t.Errorf("ProtocolErrors() = %d, want 1", s.ProtocolErrors())
	}
}

// TestCloseStopsEverything: Close returns while a handler sleeps and a client is connected, and leaves no
// goroutine behind.
func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	s := Start(t, func(c *Conn, args [][]byte) { c.Sleep(time.Hour) })
	nc, _ := dial(t, s)
	if _, err := nc.Write(resp.AppendCommandStrings(nil, "GET", "k")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Requests() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	nc.Close()
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Start", n, before)
	}
}
