package resp

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// parseAll feeds data to a parser the way a connection does: parse from the front, drop what was consumed.
// chunk > 0 makes the data arrive that many bytes at a time.
func parseAll(t testing.TB, data []byte, chunk int) (cmds [][]string, err error) {
	t.Helper()
	var p CommandParser
	var buf []byte
	for i := 0; i < len(data) || len(buf) > 0; {
		if i < len(data) {
			n := len(data) - i
			if chunk > 0 && n > chunk {
				n = chunk
			}
			buf = append(buf, data[i:i+n]...)
			i += n
		}
		for len(buf) > 0 {
			if len(buf) < p.Need() {
				break
			}
			args, n, err := p.Parse(buf)
			if err != nil {
				return cmds, err
			}
			if n == 0 {
				break
			}
			if n > len(buf) {
				t.Fatalf("consumed %d of %d bytes", n, len(buf))
			}
			if len(args) > 0 {
				var c []string
				for _, a := range args {
					c = append(c, string(a))
				}
				cmds = append(cmds, c)
			}
			buf = buf[n:]
		}
		if i >= len(data) {
			break
		}
	}
	return cmds, nil
}

func TestParseCommands(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string
	}{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", [][]string{{"GET", "key"}}},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [][]string{{"PING"}, {"ECHO", ""}}},
		{"binary", "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", [][]string{{"GET", "a\r\nb"}}},
		{"empty multibulk", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
		{"inline", "SET a b\r\n", [][]string{{"SET", "a", "b"}}},
		{"inline lf", "GET a\n", [][]string{{"GET", "a"}}},
		{"inline blanks", "  GET \t a  \r\n", [][]string{{"GET", "a"}}},
		{"inline empty line", "\r\n\nPING\r\n", [][]string{{"PING"}}},
		{"inline double quotes", `SET "a b" "c\"d"` + "\r\n", [][]string{{"SET", "a b", `c"d`}}},
		{"inline escapes", `ECHO "\x41\n\t\\"` + "\r\n", [][]string{{"ECHO", "A\n\t\\"}}},
		{"inline single quotes", `ECHO 'it\'s "x"'` + "\r\n", [][]string{{"ECHO", `it's "x"`}}},
		{"inline empty quotes", `ECHO ""` + "\r\n", [][]string{{"ECHO", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 3} {
				got, err := parseAll(t, []byte(tc.in), chunk)
				if err != nil {
					t.Fatalf("chunk %d: %q: %v", chunk, tc.in, err)
				}
				if !equal(got, tc.want) {
					t.Errorf("chunk %d: Parse(%q) = %q, want %q", chunk, tc.in, got, tc.want)
				}
			}
		})
	}
}

func equal(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

// The texts are Redis 7.0's (networking.c); the proxy test compares them with a live server.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"*abc\r\n", "Protocol error: invalid multibulk length"},
		{"*3000000000\r\n", "Protocol error: invalid multibulk length"},
		{"*+1\r\n", "Protocol error: invalid multibulk length"},
		{"*01\r\n", "Protocol error: invalid multibulk length"},
		{"*1\r\nx\r\n", "Protocol error: expected '$', got 'x'"},
		{"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$4294967296\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"},
		{"*1" + strings.Repeat("1", 70000), "Protocol error: too big mbulk count string"},
		{"*1\r\n$" + strings.Repeat("1", 70000), "Protocol error: too big bulk count string"},
		{strings.Repeat("a", 70000), "Protocol error: too big inline request"},
		{"SET a \"b\r\n", "Protocol error: unbalanced quotes in request"},
		{"SET a 'b\r\n", "Protocol error: unbalanced quotes in request"},
		{"SET a \"b\"c\r\n", "Protocol error: unbalanced quotes in request"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			_, err := parseAll(t, []byte(tc.in), 0)
			var pe ProtocolError
			if !errors.As(err, &pe) || err.Error() != tc.want {
				t.Errorf("Parse(%.40q) error = %v, want %q", tc.in, err, tc.want)
			}
		})
	}
}

// A legal but huge bulk header must not allocate its length; the parser waits for the bytes.
func TestHugeBulkHeaderAllocatesNothing(t *testing.T) {
	var p CommandParser
	in := []byte("*2\r\n$3\r\nSET\r\n$536870912\r\nabc")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 100; i++ {
		args, n, err := p.Parse(in)
		if args != nil || n != 0 || err != nil {
			t.Fatalf("Parse = %q, %d, %v; want incomplete", args, n, err)
		}
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<10 {
		t.Errorf("parsing a 512 MiB bulk header allocated %d bytes", grown)
	}
	if want := len("*2\r\n$3\r\nSET\r\n$536870912\r\n") + 536870912 + 2; p.Need() != want {
		t.Errorf("Need() = %d, want %d", p.Need(), want)
	}
	// A huge declared count grows the argument list only as elements arrive.
	p.Reset()
	big := []byte("*2147483647\r\n$4\r\nPING\r\n")
	runtime.ReadMemStats(&before)
	if _, n, err := p.Parse(big); n != 0 || err != nil {
		t.Fatalf("Parse(*2147483647 ...) = %d, %v", n, err)
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<10 {
		t.Errorf("a count of 2^31-1 allocated %d bytes", grown)
	}
}

// Resuming must not rescan: feeding a 100,000-argument command in small pieces stays linear.
func TestParseResumes(t *testing.T) {
	var in []byte
	args := make([][]byte, 100000)
	for i := range args {
		args[i] = []byte("x")
	}
	in = AppendCommand(in, args...)
	got, err := parseAll(t, in, 1000)
	if err != nil || len(got) != 1 || len(got[0]) != len(args) {
		t.Fatalf("got %d commands, err %v", len(got), err)
	}
}

func TestParseAllocs(t *testing.T) {
	var p CommandParser
	in := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
	p.Parse(in)
	if n := testing.AllocsPerRun(1000, func() { p.Parse(in) }); n != 0 {
		t.Errorf("Parse allocates %v times per command", n)
	}
}

func TestAppendError(t *testing.T) {
	if got := string(AppendError(nil, "ERR a\r\nb")); got != "-ERR a  b\r\n" {
		t.Errorf("AppendError = %q", got)
	}
}

func BenchmarkParseGet(b *testing.B) {
	var p CommandParser
	in := []byte("*2\r\n$3\r\nGET\r\n$10\r\nkey:000001\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		p.Parse(in)
	}
}

func BenchmarkParsePipeline16(b *testing.B) {
	var p CommandParser
	var in []byte
	for i := 0; i < 16; i++ {
		in = AppendCommandStrings(in, "SET", "key:000001", strings.Repeat("v", 64))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		buf := in
		for len(buf) > 0 {
			_, n, _ := p.Parse(buf)
			buf = buf[n:]
		}
	}
}

func BenchmarkAppendBulk(b *testing.B) {
	dst := make([]byte, 0, 256)
	v := bytes.Repeat([]byte("v"), 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst = AppendBulk(dst[:0], v)
	}
}
