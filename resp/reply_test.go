package resp

import (
	"strings"
	"testing"
)

var replies = []struct{ name, in string }{
	{"simple", "+OK\r\n"},
	{"simple empty", "+\r\n"},
	{"error", "-ERR wrong\r\n"},
	{"moved", "-MOVED 3999 127.0.0.1:6381\r\n"},
	{"int", ":-12\r\n"},
	{"bulk", "$5\r\nhello\r\n"},
	{"bulk binary", "$4\r\n\r\n\x00\n\r\n"},
	{"bulk empty", "$0\r\n\r\n"},
	{"bulk null", "$-1\r\n"},
	{"array null", "*-1\r\n"},
	{"array empty", "*0\r\n"},
	{"array", "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n"},
	{"nested", "*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n*1\r\n$2\r\n\r\n\r\n"},
	{"nested last", "*1\r\n*1\r\n*1\r\n:1\r\n"},
	{"errors in array", "*2\r\n-ERR a\r\n-ERR b\r\n"},
	{"map", "%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n"},
	{"map empty", "%0\r\n"},
	{"set", "~1\r\n,1.5\r\n"},
	{"null", "_\r\n"},
	{"bool", "#t\r\n"},
	{"double", ",-inf\r\n"},
	{"big number", "(3492890328409238509324850943850943825024385\r\n"},
	{"verbatim", "=7\r\ntxt:abc\r\n"},
	{"blob error", "!5\r\nERR x\r\n"},
	{"push", ">2\r\n+message\r\n$1\r\nx\r\n"},
	{"attribute", "|1\r\n+key\r\n%1\r\n+a\r\n:1\r\n:42\r\n"},
	{"attribute empty", "|0\r\n:42\r\n"},
	{"attribute in array", "*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n:2\r\n"},
}

func TestScan(t *testing.T) {
	for _, tc := range replies {
		t.Run(tc.name, func(t *testing.T) {
			stream := tc.in + "+NEXT\r\n"
			var s ReplyScanner
			if n, err := s.Scan([]byte(stream)); n != len(tc.in) || err != nil {
				t.Fatalf("Scan(%q) = %d, %v; want %d", stream, n, err, len(tc.in))
			}
			if n, err := s.Scan([]byte(stream[len(tc.in):])); n != len("+NEXT\r\n") || err != nil {
				t.Fatalf("Scan(+NEXT) after %q = %d, %v", tc.in, n, err)
			}
			if n := valueLen([]byte(stream)); n != len(tc.in) {
				t.Errorf("valueLen(%q) = %d, want %d", stream, n, len(tc.in))
			}
		})
	}
}

// Every split point, resumed on a copy at a new address, and every prefix on its own: a prefix is incomplete
// with Need() beyond it, and resuming finds the same end.
func TestScanSplit(t *testing.T) {
	for _, tc := range replies {
		t.Run(tc.name, func(t *testing.T) {
			r := []byte(tc.in)
			for cut := range len(r) {
				var s ReplyScanner
				if n, err := s.Scan(r[:cut]); n != 0 || err != nil || s.Need() <= cut || s.Need() > len(r) {
					t.Fatalf("Scan(%q) = %d, %v, Need() %d; want incomplete, Need in (%d, %d]",
						r[:cut], n, err, s.Need(), cut, len(r))
				}
				moved := append([]byte(nil), r...)
				if n, err := s.Scan(moved); n != len(r) || err != nil {
					t.Fatalf("Scan(%q) after %q = %d, %v; want %d", r, r[:cut], n, err, len(r))
				}
			}
			// One byte at a time, calling only when Need() says so.
			var s ReplyScanner
			calls := 0
			for i := 1; i <= len(r); i++ {
				if i < s.Need() {
					continue
				}
				calls++
				n, err := s.Scan(r[:i])
				if err != nil || (n != 0) != (i == len(r)) || (n != 0 && n != len(r)) {
					t.Fatalf("Scan(%q) = %d, %v", r[:i], n, err)
				}
			}
			if calls == 0 {
				t.Fatalf("Scan(%q) never complete", r)
			}
		})
	}
}

// A large reply arriving in pieces is scanned once; Need() lets the caller skip a big bulk.
func TestScanLarge(t *testing.T) {
	var in []byte
	in = AppendArrayHeader(in, 300000)
	for range 300000 {
		in = AppendBulkString(in, "x")
	}
	var s ReplyScanner
	calls := 0
	for i := 1; i <= len(in); i++ {
		if i < s.Need() {
			continue
		}
		calls++
		n, err := s.Scan(in[:i])
		if err != nil || (n != 0 && n != len(in)) || (n == 0 && i == len(in)) {
			t.Fatalf("Scan(%d of %d bytes) = %d, %v", i, len(in), n, err)
		}
	}
	bulk := append([]byte("$100000000\r\n"), make([]byte, 100000000+2)...)
	bulk[len(bulk)-2], bulk[len(bulk)-1] = '\r', '\n'
	s.Reset()
	if n, _ := s.Scan(bulk[:100]); n != 0 || s.Need() != len(bulk) {
		t.Errorf("Scan(100 MB bulk prefix) = %d, Need() = %d; want 0, %d", n, s.Need(), len(bulk))
	}
	if n, err := s.Scan(bulk); n != len(bulk) || err != nil {
		t.Errorf("Scan(100 MB bulk) = %d, %v", n, err)
	}
}

func TestScanDepth(t *testing.T) {
	var s ReplyScanner
	deep := strings.Repeat("*1\r\n", maxDepth) + ":1\r\n"
	if n, err := s.Scan([]byte(deep)); n != len(deep) || err != nil {
		t.Errorf("Scan(%d deep) = %d, %v; want %d", maxDepth, n, err, len(deep))
	}
	if n, err := s.Scan([]byte("*1\r\n" + deep)); err == nil {
		t.Errorf("Scan(%d deep) = %d, nil; want an error", maxDepth+1, n)
	}
}

func TestScanBad(t *testing.T) {
	tests := []struct{ name, in string }{
		{"unknown type", "?\r\n"},
		{"lf only", "+OK\n"},
		{"no type", "\r\n"},
		{"bulk length not a number", "$x\r\n"},
		{"bulk length -2", "$-2\r\n"},
		{"bulk without crlf", "$3\r\nabcde"},
		{"bulk with lf only", "$3\r\nabc\nx"},
		{"array -2", "*-2\r\n"},
		{"map null", "%-1\r\n"},
		{"set null", "~-1\r\n"},
		{"verbatim null", "=-1\r\n"},
		{"blob error null", "!-1\r\n"},
		{"streamed bulk", "$?\r\n;4\r\nabcd\r\n;0\r\n"},
		{"streamed array", "*?\r\n:1\r\n.\r\n"},
		{"array length huge", "*99999999999999\r\n"},
		{"bulk length huge", "$99999999999999\r\n"},
		{"bad element", "*2\r\n:1\r\n?\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s ReplyScanner
			if n, err := s.Scan([]byte(tc.in)); err == nil {
				t.Errorf("Scan(%q) = %d, nil; want an error", tc.in, n)
			}
			if s.Need() != 0 || s.pos != 0 || len(s.stack) != 0 {
				t.Errorf("Scan(%q) failed without resetting", tc.in)
			}
		})
	}
}

func TestParseIntReply(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{":0\r\n", 0, true},
		{":-42\r\n", -42, true},
		{":9223372036854775807\r\n", 1<<63 - 1, true},
		{":-9223372036854775808\r\n", -1 << 63, true},
		{":9223372036854775808\r\n", 0, false},
		{":1\r\n:2\r\n", 0, false},
		{":1\r", 0, false},
		{":\r\n", 0, false},
		{"+1\r\n", 0, false},
		{":1\rx", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if v, ok := ParseInt([]byte(tc.in)); v != tc.want || ok != tc.ok {
				t.Errorf("ParseInt(%q) = %d, %v; want %d, %v", tc.in, v, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBulkValue(t *testing.T) {
	tests := []struct {
		in         string
		val        string
		null, isOK bool
	}{
		{"$3\r\nabc\r\n", "abc", false, true},
		{"$0\r\n\r\n", "", false, true},
		{"$4\r\na\r\nb\r\n", "a\r\nb", false, true},
		{"$-1\r\n", "", true, true},
		{"$-1\r\nx", "", false, false},
		{"$3\r\nabcd\r\n", "", false, false},
		{"$3\r\nab\r\n", "", false, false},
		{"$3\r\nabcxy", "", false, false},
		{"+abc\r\n", "", false, false},
		{"$-2\r\n", "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			v, null, ok := BulkValue([]byte(tc.in))
			if string(v) != tc.val || null != tc.null || ok != tc.isOK {
				t.Errorf("BulkValue(%q) = %q, %v, %v; want %q, %v, %v", tc.in, v, null, ok, tc.val, tc.null, tc.isOK)
			}
		})
	}
}

func TestArrayElems(t *testing.T) {
	tests := []struct {
		in    string
		want  []string
		n     int
		isOK  bool
		isArr bool
	}{
		{"*3\r\n$1\r\na\r\n*1\r\n:1\r\n$-1\r\n", []string{"$1\r\na\r\n", "*1\r\n:1\r\n", "$-1\r\n"}, 3, true, true},
		{"*0\r\n", nil, 0, true, true},
		{"*-1\r\n", nil, -1, true, true},
		{"*2\r\n:1\r\n", nil, 2, false, true},            // short
		{"*1\r\n:1\r\n:2\r\n", nil, 1, false, true},      // trailing bytes
		{"*1000000000\r\n:1\r\n", nil, 1e9, false, true}, // a huge count with one element: no huge dst
		{"+OK\r\n", nil, 0, false, false},
		{"-ERR x\r\n", nil, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			prefix := [][]byte{[]byte("keep")}
			got, ok := ArrayElems([]byte(tc.in), prefix)
			if ok != tc.isOK || len(got) != 1+len(tc.want) || string(got[0]) != "keep" {
				t.Fatalf("ArrayElems(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.isOK)
			}
			for i, w := range tc.want {
				if string(got[1+i]) != w {
					t.Errorf("ArrayElems(%q)[%d] = %q, want %q", tc.in, i, got[1+i], w)
				}
			}
			if n, ok := ArrayLen([]byte(tc.in)); ok != tc.isArr || (ok && n != tc.n) {
				t.Errorf("ArrayLen(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.isArr)
			}
		})
	}
}

func TestIsError(t *testing.T) {
	for in, want := range map[string]bool{"-ERR x\r\n": true, "+OK\r\n": false, "": false, "!3\r\nERR\r\n": false} {
		if got := IsError([]byte(in)); got != want {
			t.Errorf("IsError(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestScanAllocs(t *testing.T) {
	tests := []struct{ name, in string }{
		{"bulk", "$5\r\nhello\r\n"},
		{"array", "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n"},
		{"nested", "*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n*1\r\n$2\r\nab\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s ReplyScanner
			in := []byte(tc.in)
			s.Scan(in)
			if n := testing.AllocsPerRun(1000, func() { s.Scan(in) }); n != 0 {
				t.Errorf("Scan(%q) allocates %v times", in, n)
			}
			elems := make([][]byte, 0, 8)
			if n := testing.AllocsPerRun(1000, func() { elems, _ = ArrayElems(in, elems[:0]) }); n != 0 {
				t.Errorf("ArrayElems(%q) allocates %v times", in, n)
			}
		})
	}
}

func BenchmarkScanReply(b *testing.B) {
	benchmarks := []struct{ name, in string }{
		{"bulk64", "$64\r\n" + strings.Repeat("v", 64) + "\r\n"},
		{"ok", "+OK\r\n"},
		{"array16", "*16\r\n" + strings.Repeat("$8\r\nvvvvvvvv\r\n", 16)},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			var s ReplyScanner
			in := []byte(bm.in)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				s.Scan(in)
			}
		})
	}
}

func BenchmarkArrayElems(b *testing.B) {
	in := []byte("*16\r\n" + strings.Repeat("$8\r\nvvvvvvvv\r\n", 16))
	elems := make([][]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		elems, _ = ArrayElems(in, elems[:0])
	}
}
