package resp

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// feed parses data the way a connection does: append what arrived, parse from the front while requests
// complete, drop what was consumed. sizes are the sizes of the pieces in which data arrives, cycled (nil:
// all at once). With move, every call gets the buffer at a new address, so a parser that kept pointers
// instead of offsets would fail. On every call it checks the contract: n <= len(buf), an incomplete result
// leaves Need() > len(buf), and a call with fewer than Need() bytes makes no progress.
func feed(t testing.TB, data []byte, sizes []int, move bool) parsed {
	t.Helper()
	var p CommandParser
	var r parsed
	var buf []byte
	for i, k := 0, 0; ; k++ {
		if i < len(data) {
			n := len(data) - i
			if len(sizes) > 0 {
				n = min(n, max(sizes[k%len(sizes)], 1))
			}
			if move {
				buf = append(append(make([]byte, 0, len(buf)+n), buf...), data[i:i+n]...)
			} else {
				buf = append(buf, data[i:i+n]...)
			}
			i += n
		}
		for len(buf) > 0 {
			short := len(buf) < p.Need()
			args, n, err := p.Parse(buf)
			if err != nil {
				if short {
					t.Fatalf("Parse(%.60q) failed with %d < Need() bytes", data, len(buf))
				}
				r.err = err.Error()
				r.qbPos = r.consumed
				return r
			}
			if n > len(buf) {
				t.Fatalf("Parse(%.60q) consumed %d of %d bytes", data, n, len(buf))
			}
			if n == 0 {
				if args != nil {
					t.Fatalf("Parse(%.60q) returned args %q without consuming", data, args)
				}
				if p.Need() <= len(buf) {
					t.Fatalf("Parse(%.60q) incomplete with Need() = %d <= len(buf) = %d", data, p.Need(), len(buf))
				}
				break
			}
			if short {
				t.Fatalf("Parse(%.60q) made progress with %d < Need() bytes", data, len(buf))
			}
			if len(args) > 0 {
				cmd := make([]string, len(args))
				for j, a := range args {
					cmd[j] = string(a)
				}
				r.cmds = append(r.cmds, cmd)
			} else if args != nil {
				t.Fatalf("Parse(%.60q) returned empty non-nil args", data)
			}
			r.consumed += n
			buf = buf[n:]
		}
		if i >= len(data) {
			r.qbPos = r.consumed
			if p.argc > 0 {
				r.qbPos += p.pos
			}
			return r
		}
	}
}

func cmdsEqual(a, b [][]string) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

var parseCases = []struct {
	name string
	in   string
	want [][]string
}{
	{"multibulk", "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", [][]string{{"GET", "key"}}},
	{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\nPING\r\n*1\r\n$4\r\nPING\r\n",
		[][]string{{"PING"}, {"ECHO", ""}, {"PING"}, {"PING"}}},
	{"binary bulk", "*2\r\n$3\r\nGET\r\n$6\r\na\r\n\x00\"b\r\n", [][]string{{"GET", "a\r\n\x00\"b"}}},
	{"empty multibulks", "*0\r\n*-1\r\n*-99999999999999\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
	// Redis wants a byte after each '\r' of the framing and the two bytes after bulk data, but never
	// looks at them.
	{"unchecked line ends", "*1\rX$4\rXPINGxx*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}, {"PING"}}},
	{"largest count", "*2147483647\r\n", nil},
	{"largest bulk length", "*1\r\n$536870912\r\n", nil},
	{"inline", "SET a b\r\n", [][]string{{"SET", "a", "b"}}},
	{"inline lf", "GET a\n", [][]string{{"GET", "a"}}},
	{"inline blanks", " \t GET \v a \f \r\n", [][]string{{"GET", "a"}}},
	{"inline cr inside", "ECHO a\rb\r\n", [][]string{{"ECHO", "a", "b"}}},
	{"inline vt inside", "ECHO a\vb\r\n", [][]string{{"ECHO", "a\vb"}}},
	{"inline empty lines", "\r\n\n   \r\n\t\nPING\r\n", [][]string{{"PING"}}},
	{"inline cr cr lf", "PING\r\r\n", [][]string{{"PING"}}},
	{"inline double quotes", `SET "a b" "c\"d"` + "\r\n", [][]string{{"SET", "a b", `c"d`}}},
	{"inline escapes", `ECHO "\x41\x4a\x4A\n\r\t\b\a\\\q"` + "\n", [][]string{{"ECHO", "AJJ\n\r\t\b\a\\q"}}},
	{"inline bad hex is literal", `ECHO "\x4g\x"` + "\n", [][]string{{"ECHO", "x4gx"}}},
	{"inline hex nul", `ECHO "\x00"` + "\n", [][]string{{"ECHO", "\x00"}}},
	{"inline single quotes", `ECHO 'it\'s "x" \n'` + "\r\n", [][]string{{"ECHO", `it's "x" \n`}}},
	{"inline empty quotes", `ECHO "" ''` + "\r\n", [][]string{{"ECHO", "", ""}}},
	{"inline quote inside word", `ECHO a"b c"d` + "\r\n", nil}, // the closing quote needs a blank after it
	{"inline quote inside word ok", `ECHO a"b c" d'e'` + "\r\n", [][]string{{"ECHO", "ab c", "de"}}},
	{"inline quote then tab", "ECHO \"a\"\tb\r\n", [][]string{{"ECHO", "a", "b"}}},
	{"inline quote then vt", "ECHO \"a\"\vb\r\n", [][]string{{"ECHO", "a", "b"}}},
	{"mixed", "PING\r\n*1\r\n$4\r\nPING\r\nECHO x\n", [][]string{{"PING"}, {"PING"}, {"ECHO", "x"}}},
}

func TestParse(t *testing.T) {
	tests := parseCases
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := refParse([]byte(tc.in))
			if !cmdsEqual(want.cmds, tc.want) && want.err == "" {
				t.Fatalf("reference parses %q as %q, test wants %q", tc.in, want.cmds, tc.want)
			}
			for _, sizes := range [][]int{nil, {1}, {3}, {2, 7, 1}} {
				got := feed(t, []byte(tc.in), sizes, true)
				if !cmdsEqual(got.cmds, want.cmds) || got.err != want.err || got.consumed != want.consumed ||
					got.qbPos != want.qbPos {
					t.Errorf("pieces %v: Parse(%q) = %+v, want %+v", sizes, tc.in, got, want)
				}
			}
		})
	}
}

// The texts are Redis 7.0.15's; TestLiveRedis compares them with a real server.
func parseErrorCases() []struct{ name, in, want string } {
	big := strings.Repeat("1", MaxInlineSize+1)
	return []struct{ name, in, want string }{
		{"count not a number", "*abc\r\n", "Protocol error: invalid multibulk length"},
		{"count empty", "*\r\n", "Protocol error: invalid multibulk length"},
		{"count above INT_MAX", "*2147483648\r\n", "Protocol error: invalid multibulk length"},
		{"count above int64", "*99999999999999999999\r\n", "Protocol error: invalid multibulk length"},
		{"count plus sign", "*+1\r\n", "Protocol error: invalid multibulk length"},
		{"count leading zero", "*01\r\n", "Protocol error: invalid multibulk length"},
		{"count minus zero", "*-0\r\n", "Protocol error: invalid multibulk length"},
		{"count blank", "*1 \r\n", "Protocol error: invalid multibulk length"},
		{"count lf only", "*1\n$4\r\nPING\r\n", "Protocol error: invalid multibulk length"},
		{"count long line with end", "*" + big + "\r\n", "Protocol error: invalid multibulk length"},
		{"count too big", "*" + big, "Protocol error: too big mbulk count string"},
		{"count nul", "*1\x00\r\n" + big, "Protocol error: too big mbulk count string"},
		{"not a bulk", "*1\r\nx\r\n", "Protocol error: expected '$', got 'x'"},
		{"not a bulk cr", "*1\r\n\r\n", "Protocol error: expected '$', got '\r'"},
		{"not a bulk high byte", "*1\r\n\xff\r\n", "Protocol error: expected '$', got '\xff'"},
		{"inline as element", "*2\r\n$4\r\nECHO\r\nPING\r\n", "Protocol error: expected '$', got 'P'"},
		{"bulk negative", "*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
		{"bulk null", "*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
		{"bulk empty", "*1\r\n$\r\n", "Protocol error: invalid bulk length"},
		{"bulk leading zero", "*1\r\n$01\r\n", "Protocol error: invalid bulk length"},
		{"bulk not a number", "*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
		{"bulk 2^32", "*1\r\n$4294967296\r\n", "Protocol error: invalid bulk length"},
		{"bulk above max", "*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"},
		{"bulk long line with end", "*1\r\n$" + big + "\r\n", "Protocol error: invalid bulk length"},
		{"bulk header too big", "*1\r\n$" + big, "Protocol error: too big bulk count string"},
		{"bulk header nul", "*1\r\n$4\x00\r\n" + big, "Protocol error: too big bulk count string"},
		{"second bulk header too big", "*2\r\n$1\r\na\r\n" + big, "Protocol error: too big bulk count string"},
		{"inline too big", strings.Repeat("a", MaxInlineSize+1), "Protocol error: too big inline request"},
		{"inline nul", "PI\x00NG\r\n" + big, "Protocol error: too big inline request"},
		{"unbalanced double", "SET a \"b\r\n", "Protocol error: unbalanced quotes in request"},
		{"unbalanced single", "SET a 'b\r\n", "Protocol error: unbalanced quotes in request"},
		{"escaped closing quote", "ECHO \"a\\\"\r\n", "Protocol error: unbalanced quotes in request"},
		{"text after closing double", "SET a \"b\"c\r\n", "Protocol error: unbalanced quotes in request"},
		{"text after closing single", "SET a 'b'c\r\n", "Protocol error: unbalanced quotes in request"},
		{"after good commands", "PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n", "Protocol error: invalid multibulk length"},
	}
}

func TestParseErrors(t *testing.T) {
	tests := parseErrorCases()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ref := refParse([]byte(tc.in)); ref.err != tc.want {
				t.Fatalf("reference: %.40q gives %q, test wants %q", tc.in, ref.err, tc.want)
			}
			// Inputs over MaxInlineSize are fed whole: in pieces a "too big" error may come first, as in Redis.
			sizes := [][]int{nil}
			if len(tc.in) <= MaxInlineSize {
				sizes = append(sizes, []int{1}, []int{5})
			}
			for _, s := range sizes {
				got := feed(t, []byte(tc.in), s, false)
				if got.err != tc.want {
					t.Errorf("pieces %v: Parse(%.40q) error = %q, want %q", s, tc.in, got.err, tc.want)
				}
			}
			// The caller tells protocol errors apart with errors.As.
			var p CommandParser
			var err error
			for buf, n := []byte(tc.in), 1; err == nil && n > 0; buf = buf[n:] {
				_, n, err = p.Parse(buf)
			}
			if pe := ProtocolError(""); !errors.As(err, &pe) {
				t.Errorf("Parse(%.40q) error %T is not a ProtocolError", tc.in, err)
			}
		})
	}
}

// Need is what lets the caller skip gathering a large request until all of it is there, so it must be exact,
// not just a lower bound.
func TestParseNeed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", 1},
		{"count", "*2", 3},
		{"count cr", "*2\r", 4},
		{"after count", "*2\r\n", 5},
		{"bulk header", "*2\r\n$3", 7},
		{"bulk header cr", "*2\r\n$3\r", 8},
		{"bulk data", "*2\r\n$3\r\nG", len("*2\r\n$3\r\nGET\r\n")},
		{"bulk data cr", "*2\r\n$3\r\nGET\r", len("*2\r\n$3\r\nGET\r\n")},
		{"second header", "*2\r\n$3\r\nGET\r\n", len("*2\r\n$3\r\nGET\r\n") + 1},
		{"big bulk", "*2\r\n$3\r\nSET\r\n$1000000\r\nab", len("*2\r\n$3\r\nSET\r\n$1000000\r\n") + 1000000 + 2},
		{"max bulk", "*1\r\n$536870912\r\n", len("*1\r\n$536870912\r\n") + 536870912 + 2},
		{"inline", "GET", 4},
		{"inline cr", "GET\r", 5},
		{"nul in count", "*1\x00\r\n", MaxInlineSize + 1},
		{"nul in header", "*1\r\n$1\x00\r\n", len("*1\r\n") + MaxInlineSize + 1},
		{"nul inline", "GET \x00\n", MaxInlineSize + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p CommandParser
			args, n, err := p.Parse([]byte(tc.in))
			if args != nil || n != 0 || err != nil {
				t.Fatalf("Parse(%q) = %q, %d, %v; want incomplete", tc.in, args, n, err)
			}
			if p.Need() != tc.want {
				t.Errorf("Parse(%q): Need() = %d, want %d", tc.in, p.Need(), tc.want)
			}
		})
	}
}

// The legal-but-slow twin of the adversarial cases: a varied pipeline one byte at a time gives the same
// commands as all at once.
func TestParseByteAtATime(t *testing.T) {
	var in []byte
	var want [][]string
	for i := range 200 {
		args := []string{"SET", fmt.Sprintf("key:%d", i), strings.Repeat("v\r\n", i)}
		in = AppendCommandStrings(in, args...)
		want = append(want, args)
		in = append(in, fmt.Sprintf("ECHO \"x\\x%02x\" 'y'\r\n", i)...)
		want = append(want, []string{"ECHO", "x" + string([]byte{byte(i)}), "y"})
		in = append(in, "*0\r\n\r\n"...)
	}
	whole := feed(t, in, nil, false)
	slow := feed(t, in, []int{1}, false)
	if !cmdsEqual(whole.cmds, want) || whole.err != "" || whole.consumed != len(in) {
		t.Fatalf("whole: %d commands, err %q, consumed %d of %d", len(whole.cmds), whole.err, whole.consumed, len(in))
	}
	if !cmdsEqual(slow.cmds, want) || slow.err != "" || slow.consumed != len(in) {
		t.Errorf("byte at a time: %d commands, err %q, consumed %d of %d", len(slow.cmds), slow.err, slow.consumed, len(in))
	}
}

// Resuming must not rescan. A command with 300,000 arguments fed one byte at a time takes ~2.4M calls; if
// each call went back over what had arrived, that would be ~10^12 steps instead of well under a second.
func TestParseResumesLinearly(t *testing.T) {
	args := make([][]byte, 300000)
	for i := range args {
		args[i] = []byte("x")
	}
	in := AppendCommand(nil, args...)
	in = append(in, "PING\r\n"...)
	start := time.Now()
	got := feed(t, in, []int{1}, false)
	if got.err != "" || len(got.cmds) != 2 || len(got.cmds[0]) != len(args) {
		t.Fatalf("got %d commands, err %q", len(got.cmds), got.err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("byte-at-a-time parse of %d bytes took %v", len(in), d)
	}
	// The same for a long line that never ends.
	line := bytes.Repeat([]byte("a"), MaxInlineSize+1)
	start = time.Now()
	if got := feed(t, line, []int{1}, false); got.err != ErrTooBigInline.Error() {
		t.Errorf("endless inline line: err %q", got.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("byte-at-a-time endless line took %v", d)
	}
}

// A legal but huge bulk header must not allocate its length: the parser waits for the bytes.
func TestParseHugeBulkHeader(t *testing.T) {
	in := []byte("*2\r\n$3\r\nSET\r\n$536870912\r\nabc")
	var p CommandParser
	p.Parse(in) // warm
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	allocs := testing.AllocsPerRun(100, func() {
		if args, n, err := p.Parse(in); args != nil || n != 0 || err != nil {
			t.Fatalf("Parse = %q, %d, %v; want incomplete", args, n, err)
		}
	})
	runtime.ReadMemStats(&after)
	if allocs != 0 {
		t.Errorf("waiting for a 512 MiB bulk allocates %v times per call", allocs)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<10 {
		t.Errorf("waiting for a 512 MiB bulk allocated %d bytes", grown)
	}
	if want := len("*2\r\n$3\r\nSET\r\n$536870912\r\n") + 536870912 + 2; p.Need() != want {
		t.Errorf("Need() = %d, want %d", p.Need(), want)
	}
}

// A huge declared count grows the argument list only as elements arrive (Redis: min(count, 1024)).
func TestParseHugeCount(t *testing.T) {
	in := []byte("*2147483647\r\n$4\r\nPING\r\n")
	var p CommandParser
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	args, n, err := p.Parse(in)
	runtime.ReadMemStats(&after)
	if args != nil || n != 0 || err != nil {
		t.Fatalf("Parse(%q) = %q, %d, %v; want incomplete", in, args, n, err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4<<10 {
		t.Errorf("Parse(%q) allocated %d bytes", in, grown)
	}
	if len(p.spans) != 1 || p.Need() != len(in)+1 {
		t.Errorf("Parse(%q): %d elements kept, Need() = %d; want 1, %d", in, len(p.spans), p.Need(), len(in)+1)
	}
}

// One huge request must not pin its memory in the parser afterwards.
func TestParseReleasesHugeRequest(t *testing.T) {
	args := make([]string, 100000)
	for i := range args {
		args[i] = "x"
	}
	var p CommandParser
	if got, _, err := p.Parse(AppendCommandStrings(nil, args...)); len(got) != len(args) || err != nil {
		t.Fatalf("Parse: %d args, %v", len(got), err)
	}
	line := "ECHO " + strings.Repeat("ab ", 100000) + "\r\n"
	if got, _, err := p.Parse([]byte(line)); len(got) != 100001 || err != nil {
		t.Fatalf("Parse(inline): %d args, %v", len(got), err)
	}
	if cap(p.args) > maxKeepArgs || cap(p.spans) > maxKeepArgs || cap(p.unq) > maxKeepInline {
		t.Errorf("parser keeps args %d, spans %d, unq %d", cap(p.args), cap(p.spans), cap(p.unq))
	}
}

// A caller that breaks the contract (a shorter buffer than last time) gets "incomplete", not a panic on its
// event loop.
func TestParseShorterBuffer(t *testing.T) {
	var p CommandParser
	p.Parse([]byte("*2\r\n$3\r\nGET\r\n$3\r\nk"))
	if args, n, err := p.Parse([]byte("*2\r\n")); args != nil || n != 0 || err != nil {
		t.Errorf("Parse(shorter) = %q, %d, %v", args, n, err)
	}
	p.Reset()
	p.Parse([]byte("GET aaaaaaaaaa"))
	if args, n, err := p.Parse([]byte("GET")); args != nil || n != 0 || err != nil {
		t.Errorf("Parse(shorter inline) = %q, %d, %v", args, n, err)
	}
}

func TestParseAllocs(t *testing.T) {
	tests := []struct{ name, in string }{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"},
		{"inline", "GET \"key\"\r\n"},
		{"pipeline", strings.Repeat("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n", 16)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p CommandParser
			in := []byte(tc.in)
			parse := func() {
				for buf := in; len(buf) > 0; {
					_, n, err := p.Parse(buf)
					if n == 0 || err != nil {
						t.Fatalf("Parse(%q) = %d, %v", buf, n, err)
					}
					buf = buf[n:]
				}
			}
			parse()
			if n := testing.AllocsPerRun(1000, parse); n != 0 {
				t.Errorf("Parse(%q) allocates %v times", tc.in, n)
			}
		})
	}
}

func BenchmarkParseGet(b *testing.B) {
	var p CommandParser
	in := []byte("*2\r\n$3\r\nGET\r\n$10\r\nkey:000001\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		p.Parse(in)
	}
}

func BenchmarkParsePipeline16(b *testing.B) {
	var p CommandParser
	var in []byte
	for range 16 {
		in = AppendCommandStrings(in, "SET", "key:000001", strings.Repeat("v", 64))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		for buf := in; len(buf) > 0; {
			_, n, _ := p.Parse(buf)
			buf = buf[n:]
		}
	}
}

func BenchmarkParseInline(b *testing.B) {
	var p CommandParser
	in := []byte("GET key:000001\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		p.Parse(in)
	}
}

// TestParseUnauthenticatedLimits: before AUTH, Redis takes at most 10 arguments of at most 16384 bytes; one
// more of either is its protocol error. Authenticated, both pass.
func TestParseUnauthenticatedLimits(t *testing.T) {
	args := func(n, size int) []byte {
		a := make([]string, n)
		for i := range a {
			a[i] = strings.Repeat("x", size)
		}
		return AppendCommandStrings(nil, a...)
	}
	for _, tc := range []struct {
		req  []byte
		want error
	}{
		{args(10, 1), nil},
		{args(11, 1), ErrUnauthMultibulkLength},
		{args(2, 16384), nil},
		{args(2, 16385), ErrUnauthBulkLength},
	} {
		for _, unauth := range []bool{true, false} {
			p := CommandParser{Unauthenticated: unauth}
			_, n, err := p.Parse(tc.req)
			want := tc.want
			if !unauth {
				want = nil
			}
			if err != want || err == nil && n != len(tc.req) {
				t.Errorf("unauthenticated %v, %d bytes: n %d, err %v; want %v", unauth, len(tc.req), n, err, want)
			}
		}
	}
}

// TestParserForget: a parser at rest lets go of its last arguments (they point into the caller's buffer),
// and of a wider earlier request's, keeps no scratch past the bound, and parses on as before.
func TestParserForget(t *testing.T) {
	for _, n := range []int{1023, 1024, 1025} {
		var p CommandParser
		words := []string{"MSET"}
		for i := range n - 1 {
			words = append(words, fmt.Sprint("k", i))
		}
		buf := AppendCommandStrings(nil, words...)
		if args, m, err := p.Parse(buf); err != nil || m != len(buf) || len(args) != n {
			t.Fatalf("%d arguments: %d, %d, %v", n, len(args), m, err)
		}
		narrow := AppendCommandStrings(nil, "GET", "x")
		if _, m, err := p.Parse(narrow); err != nil || m != len(narrow) {
			t.Fatalf("a narrow request after %d arguments: %d, %v", n, m, err)
		}
		p.Forget()
		if cap(p.args) > 1024 || cap(p.spans) > 1024 {
			t.Errorf("%d arguments: scratch of %d arguments and %d spans kept past the bound", n, cap(p.args), cap(p.spans))
		}
		for i, a := range p.args[:cap(p.args)] {
			if a != nil {
				t.Fatalf("%d arguments: argument %d still points into the buffer", n, i)
			}
		}
		buf = AppendCommandStrings(nil, "GET", "k")
		if args, m, err := p.Parse(buf); err != nil || m != len(buf) || len(args) != 2 || string(args[1]) != "k" {
			t.Fatalf("after Forget: %q, %d, %v", args, m, err)
		}
	}
}
