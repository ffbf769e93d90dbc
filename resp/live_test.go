package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLiveRedis sends each input to a real redis-server as raw bytes and compares what comes back with what
// the proxy would do after parsing it: the replies to the parsed commands (obtained by sending them to the
// same server re-encoded), then the protocol error and a close, and for an incomplete tail, the bytes Redis
// still holds (CLIENT LIST qbuf), which must equal what the parser has not consumed. The inputs are the
// tables above plus generated ones.
func TestLiveRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	addr := startRedis(t)

	type input struct{ name, in string }
	var inputs []input
	for _, tc := range parseCases {
		inputs = append(inputs, input{tc.name, tc.in})
	}
	for _, tc := range parseErrorCases() {
		inputs = append(inputs, input{tc.name, tc.in})
	}
	for i, in := range generatedRequests(600) {
		inputs = append(inputs, input{fmt.Sprintf("generated %d", i), in})
	}

	work := make(chan input)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctl := dialRedis(t, addr)
			defer ctl.Close()
			for in := range work {
				if err := compareWithRedis(t, addr, ctl, []byte(in.in)); err != nil {
					t.Errorf("%s: %q: %v", in.name, truncate(in.in), err)
				}
			}
		}()
	}
	for _, in := range inputs {
		work <- in
	}
	close(work)
	wg.Wait()
}

func compareWithRedis(t *testing.T, addr string, ctl *redisConn, in []byte) error {
	ours := feed(t, in, nil, false)
	if len(in) > MaxInlineSize && !strings.Contains(ours.err, "too big") {
		return nil // a long line that does end: Redis's answer depends on how its reads split the bytes
	}
	// What Redis answers to the commands we parsed.
	var want []byte
	for _, cmd := range ours.cmds {
		r, err := ctl.do(AppendCommandStrings(nil, cmd...))
		if err != nil {
			return fmt.Errorf("control connection: %w", err)
		}
		want = append(want, r...)
	}
	if ours.err != "" {
		want = AppendError(want, "ERR "+ours.err)
	}

	raw := dialRedis(t, addr)
	defer raw.Close()
	idReply, err := raw.do(AppendCommandStrings(nil, "CLIENT", "ID"))
	if err != nil {
		return err
	}
	id, ok := ParseInt(idReply)
	if !ok {
		return fmt.Errorf("CLIENT ID = %q", idReply)
	}
	if _, err := raw.c.Write(in); err != nil && ours.err == "" {
		return err
	}
	if ours.err != "" {
		_ = raw.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, err := io.ReadAll(raw.c)
		if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
			return fmt.Errorf("reading until close: %w (got %q)", err, got)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("Redis replied %q then closed, want %q", truncate(string(got)), truncate(string(want)))
		}
		return nil
	}
	_ = raw.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got := make([]byte, len(want))
	if k, err := io.ReadFull(raw.c, got); err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("Redis replied %q (%v), want %q", got[:k], err, want)
	}
	// Nothing more comes, and Redis holds exactly the bytes we have not consumed.
	wantQbuf := len(in) - ours.qbPos
	var qbuf int
	for deadline := time.Now().Add(2 * time.Second); ; {
		if qbuf, err = ctl.qbuf(id); err != nil {
			return err
		}
		if qbuf == wantQbuf || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if qbuf != wantQbuf {
		return fmt.Errorf("Redis holds %d unparsed bytes, the parser %d (%+v)", qbuf, wantQbuf, ours)
	}
	_ = raw.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if extra, _ := raw.c.Read(make([]byte, 512)); extra > 0 {
		return fmt.Errorf("Redis sent %d more bytes than the parsed commands' replies", extra)
	}
	return nil
}

// generatedRequests builds inputs from fragments of requests, valid and not, so that many of them hit the
// edges between parsing states. Only PING and ECHO appear as command names: the server is shared.
func generatedRequests(n int) []string {
	frags := []string{
		"*", "*1\r\n", "*2\r\n", "*0\r\n", "*-1\r\n", "$", "$4\r\nPING\r\n", "$4\r\nECHO\r\n", "$1\r\nx\r\n",
		"$0\r\n\r\n", "$3\r\na\r\n\r\n", "PING\r\n", "ECHO ", "PING", "ECHO", "x", "1", "2", "0", "-", "+",
		"\r\n", "\r", "\n", "\x00", " ", "\t", "\v", "\"", "'", "\\", "\\x41", "\\x4", "\\n", "\"a b\"", "'c'",
		"\xff", "$-1\r\n", "$01\r\n",
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for range 1 + rnd.IntN(16) {
			b.WriteString(frags[rnd.IntN(len(frags))])
		}
		out[i] = b.String()
	}
	return out
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

type redisConn struct {
	c   net.Conn
	buf []byte
	sc  ReplyScanner
}

func dialRedis(t *testing.T, addr string) *redisConn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return &redisConn{c: c}
}

func (rc *redisConn) Close() { rc.c.Close() }

// do sends a request and reads one reply.
func (rc *redisConn) do(req []byte) ([]byte, error) {
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write(req); err != nil {
		return nil, err
	}
	rc.buf = rc.buf[:0]
	rc.sc.Reset()
	chunk := make([]byte, 4096)
	for {
		if n, err := rc.sc.Scan(rc.buf); err != nil {
			return nil, err
		} else if n > 0 {
			return rc.buf[:n], nil
		}
		k, err := rc.c.Read(chunk)
		rc.buf = append(rc.buf, chunk[:k]...)
		if err != nil {
			return nil, err
		}
	}
}

func (rc *redisConn) qbuf(id int64) (int, error) {
	r, err := rc.do(AppendCommandStrings(nil, "CLIENT", "LIST", "ID", strconv.FormatInt(id, 10)))
	if err != nil {
		return 0, err
	}
	v, _, ok := BulkValue(r)
	if !ok {
		return 0, fmt.Errorf("CLIENT LIST = %q", r)
	}
	for f := range strings.FieldsSeq(string(v)) {
		if q, found := strings.CutPrefix(f, "qbuf="); found {
			return strconv.Atoi(q)
		}
	}
	return 0, fmt.Errorf("no qbuf in CLIENT LIST %q", v)
}

// startRedis starts a throwaway redis-server on a free port and stops it (by its own PID) when the test ends.
func startRedis(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			rc := &redisConn{c: c}
			r, err := rc.do(AppendCommandStrings(nil, "PING"))
			rc.Close()
			if err == nil && string(r) == "+PONG\r\n" {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start", addr)
		}
	}
}
