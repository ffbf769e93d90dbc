package resp

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzReplyScanner checks, for any input: no panic; lengths within the buffer; the same split of the stream
// into replies (and the same error) scanned whole, in pieces of fuzzer-chosen sizes at moving addresses, and
// one byte at a time; Need() never skips a length at which Scan would make progress; each reply is one
// value for valueLen; and ArrayElems splits an array into elements that add up to it.
func FuzzReplyScanner(f *testing.F) {
	for _, r := range replies {
		f.Add([]byte(r.in), []byte{2, 5})
	}
	for _, s := range []string{
		"*2\r\n$5\r\nhello\r\n*1\r\n:1\r\n+OK\r\n",
		"$1099511627776\r\n",
		"*1099511627776\r\n",
		"$1099511627777\r\n",
		"*-1\r\n$-1\r\n%-1\r\n",
		"|1\r\n+a\r\n+b\r\n*1\r\n|0\r\n:1\r\n",
		"$?\r\n;1\r\na\r\n;0\r\n",
		"$3\r\nabcde",
		strings.Repeat("*1\r\n", 64) + ":1\r\n", // deeper ones are slow to minimize; see TestScanDepth
		"+OK\n",
	} {
		f.Add([]byte(s), []byte{1})
	}
	f.Fuzz(func(t *testing.T, data, pieces []byte) {
		sizes := make([]int, len(pieces))
		for i, p := range pieces {
			sizes[i] = int(p)
		}
		whole, errWhole := scanAll(t, data, nil, false)
		split, errSplit := scanAll(t, data, sizes, len(data) <= 4096) // moving a large buffer per piece is O(n^2)
		bytewise, errBytewise := scanAll(t, data, []int{1}, false)
		if errWhole != errSplit || errWhole != errBytewise || !sameReplies(whole, split) || !sameReplies(whole, bytewise) {
			t.Fatalf("Scan(%q): whole %q %v, in pieces %v %q %v, byte by byte %q %v",
				data, whole, errWhole, sizes, split, errSplit, bytewise, errBytewise)
		}
		for _, r := range whole {
			if n := valueLen(r); n != len(r) {
				t.Fatalf("valueLen(%q) = %d", r, n)
			}
			if r[0] != '*' {
				continue
			}
			elems, ok := ArrayElems(r, nil)
			n, _ := ArrayLen(r)
			if !ok || (n >= 0 && len(elems) != n) {
				t.Fatalf("ArrayElems(%q) = %q, %v", r, elems, ok)
			}
			if len(elems) > 0 && &elems[len(elems)-1][len(elems[len(elems)-1])-1] != &r[len(r)-1] {
				t.Fatalf("ArrayElems(%q) = %q does not reach the end", r, elems)
			}
		}
	})
}

// scanAll splits data into replies the way a backend connection does; sizes and move as for feed. It checks
// on every call that n <= len(buf), that an incomplete result leaves Need() > len(buf), and that a call with
// fewer than Need() bytes makes no progress.
func scanAll(t *testing.T, data []byte, sizes []int, move bool) (out [][]byte, err error) {
	var s ReplyScanner
	var buf []byte
	for i, k := 0, 0; i < len(data); k++ {
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
		for len(buf) > 0 {
			short := len(buf) < s.Need()
			m, err := s.Scan(buf)
			if err != nil {
				if short {
					t.Fatalf("Scan(%q) failed with fewer than Need() bytes", buf)
				}
				return out, err
			}
			if m > len(buf) {
				t.Fatalf("Scan(%q) = %d, beyond the buffer", buf, m)
			}
			if m == 0 {
				if s.Need() <= len(buf) {
					t.Fatalf("Scan(%q) incomplete with Need() = %d", buf, s.Need())
				}
				break
			}
			if short {
				t.Fatalf("Scan(%q) made progress with fewer than Need() bytes", buf)
			}
			out = append(out, bytes.Clone(buf[:m]))
			buf = buf[m:]
		}
	}
	return out, nil
}

func sameReplies(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
