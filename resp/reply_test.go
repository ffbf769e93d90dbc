package resp

import (
	"fmt"
	"strings"
	"testing"
)

var replies = []string{
	"+OK\r\n",
	"-ERR wrong\r\n",
	":-12\r\n",
	"$5\r\nhello\r\n",
	"$0\r\n\r\n",
	"$-1\r\n",
	"*-1\r\n",
	"*0\r\n",
	"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n",
	"*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n*1\r\n$2\r\n\r\n\r\n",
	"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n",
	"~1\r\n,1.5\r\n",
	"_\r\n",
	"#t\r\n",
	"=7\r\ntxt:abc\r\n",
	"(123\r\n",
	">2\r\n+message\r\n$1\r\nx\r\n",
}

func TestScanWholeAndSplit(t *testing.T) {
	for _, r := range replies {
		t.Run(fmt.Sprintf("%q", r), func(t *testing.T) {
			stream := r + "+NEXT\r\n"
			var s ReplyScanner
			if n, err := s.Scan([]byte(stream)); n != len(r) || err != nil {
				t.Fatalf("Scan(%q) = %d, %v; want %d", stream, n, err, len(r))
			}
			// Every split point: a prefix is incomplete, then the whole reply is found on resume.
			for cut := 0; cut < len(r); cut++ {
				var s ReplyScanner
				if n, err := s.Scan([]byte(r[:cut])); n != 0 || err != nil {
					t.Fatalf("Scan(%q) = %d, %v; want incomplete", r[:cut], n, err)
				}
				if n, err := s.Scan([]byte(stream)); n != len(r) || err != nil {
					t.Fatalf("resume after %d bytes: %d, %v; want %d", cut, n, err, len(r))
				}
			}
		})
	}
}

func TestScanBad(t *testing.T) {
	for _, in := range []string{"?\r\n", "+OK\n", "$x\r\n", "*-2\r\n", "$-2\r\n", "%-1\r\n",
		strings.Repeat("*1\r\n", maxDepth+1)} {
		var s ReplyScanner
		if _, err := s.Scan([]byte(in)); err == nil {
			t.Errorf("Scan(%.30q) accepted bad input", in)
		}
	}
}

func TestReadHelpers(t *testing.T) {
	if v, ok := ParseInt([]byte(":-42\r\n")); !ok || v != -42 {
		t.Errorf("ParseInt = %d, %v", v, ok)
	}
	if v, null, ok := BulkValue([]byte("$3\r\nabc\r\n")); !ok || null || string(v) != "abc" {
		t.Errorf("BulkValue = %q, %v, %v", v, null, ok)
	}
	if _, null, ok := BulkValue([]byte("$-1\r\n")); !ok || !null {
		t.Errorf("BulkValue(null) = %v, %v", null, ok)
	}
	elems, ok := ArrayElems([]byte("*3\r\n$1\r\na\r\n*1\r\n:1\r\n$-1\r\n"), nil)
	if !ok || len(elems) != 3 || string(elems[1]) != "*1\r\n:1\r\n" || string(elems[2]) != "$-1\r\n" {
		t.Errorf("ArrayElems = %q, %v", elems, ok)
	}
	if _, ok := ArrayElems([]byte("+OK\r\n"), nil); ok {
		t.Error("ArrayElems accepted a status reply")
	}
}

func TestScanAllocs(t *testing.T) {
	var s ReplyScanner
	in := []byte("*3\r\n$1\r\na\r\n$-1\r\n:1\r\n")
	s.Scan(in)
	if n := testing.AllocsPerRun(1000, func() { s.Scan(in) }); n != 0 {
		t.Errorf("Scan allocates %v times per reply", n)
	}
}

func BenchmarkScanReply(b *testing.B) {
	var s ReplyScanner
	in := []byte("$64\r\n" + strings.Repeat("v", 64) + "\r\n")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Scan(in)
	}
}
