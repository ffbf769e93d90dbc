package resp

import (
	"bytes"
	"errors"
)

const (
	// maxDepth bounds the nesting of a reply. Not 64: a Lua script can return tables nested up to the Lua C
	// stack limit (EVAL of {{{...}}} 7,994 deep works on Redis 7.0.15), and rejecting a legitimate reply
	// would close a backend connection shared by many clients. The stack costs 8 bytes a level and every
	// level takes at least 4 bytes of input, so the bound is about memory, not safety.
	maxDepth = 8192
	// maxReplyLen bounds a declared bulk length or element count: far beyond anything real
	// (proto-max-bulk-len is 512 MiB) but small enough that offsets cannot overflow.
	maxReplyLen = 1 << 40
)

// ErrBadReply is a reply that is not valid RESP. The backend connection is out of step and must be closed.
var ErrBadReply = errors.New("resp: malformed reply")

// ReplyScanner finds where each reply ends in a backend's stream without decoding it, so the proxy can pass
// replies through as raw bytes. It understands RESP2 (+ - : $ *) and RESP3 (_ , # ( ! = % ~ > |); streamed
// RESP3 aggregates ($? *? and the ; . parts) are rejected, as Redis never sends them. The zero value is ready
// to use; it belongs to one connection.
type ReplyScanner struct {
	pos   int   // offset of the next unscanned byte of the reply in progress
	scan  int   // offset before which the current line is known to hold no '\n'
	stack []int // values still expected by each open aggregate, innermost last; never sized from the wire
	need  int   // len(buf) needed before another call can make progress
}

// Need is the buffer length at which Scan can make progress; a caller may wait for that many bytes before
// gathering them.
func (s *ReplyScanner) Need() int { return s.need }

// Reset forgets a partial reply.
func (s *ReplyScanner) Reset() {
	s.pos, s.scan, s.need = 0, 0, 0
	s.stack = s.stack[:0]
}

// Scan returns the length of the complete reply at the front of buf, or 0 if it is not complete yet. The
// progress made is kept as offsets: until Scan returns a length, every call must get a buf that starts with
// the same bytes (at any address, possibly longer), and it continues where the last one stopped, so a 100 MB
// array arriving in pieces is scanned once.
func (s *ReplyScanner) Scan(buf []byte) (int, error) {
	var n int
	var err error
	*s, n, err = s.scan1(buf)
	return n, err
}

// scan1 is Scan on a copy of the scanner, returned updated. Passing it by value keeps a caller's stack array
// (valueLen's) off the heap.
func (s ReplyScanner) scan1(buf []byte) (ReplyScanner, int, error) {
	if s.pos > len(buf) { // the caller broke the contract; don't panic on its event loop
		s.need = s.pos
		return s, 0, nil
	}
	for {
		from := min(max(s.scan, s.pos), len(buf))
		i := bytes.IndexByte(buf[from:], '\n')
		if i < 0 {
			s.scan = len(buf)
			s.need = len(buf) + 1
			return s, 0, nil
		}
		nl := from + i
		if nl < s.pos+2 || buf[nl-1] != '\r' {
			return s.fail()
		}
		typ, line := buf[s.pos], buf[s.pos+1:nl-1]
		next := nl + 1
		switch typ {
		case '+', '-', ':', ',', '(', '_', '#':
		case '$', '!', '=':
			n, ok := ParseDecimal(line)
			if !ok || n < -1 || n > maxReplyLen || (n == -1 && typ != '$') {
				return s.fail()
			}
			if n >= 0 {
				end := next + int(n) + 2
				if len(buf) < end {
					s.scan = nl // resume at this header, known complete
					s.need = end
					return s, 0, nil
				}
				if buf[end-2] != '\r' || buf[end-1] != '\n' {
					return s.fail()
				}
				next = end
			}
		case '*', '%', '~', '>', '|':
			n, ok := ParseDecimal(line)
			if !ok || n < -1 || n > maxReplyLen || (n == -1 && typ != '*') {
				return s.fail()
			}
			switch typ {
			case '%':
				n *= 2 // key, value
			case '|':
				n = 2*n + 1 // an attribute map belongs to the value after it
			}
			s.pos, s.scan = next, next
			if n > 0 {
				if len(s.stack) >= maxDepth {
					return s.fail()
				}
				s.stack = append(s.stack, int(n))
				continue
			}
		default:
			return s.fail()
		}
		s.pos, s.scan = next, next
		// A value is complete: close the aggregates it completes.
		for len(s.stack) > 0 {
			top := len(s.stack) - 1
			if s.stack[top]--; s.stack[top] > 0 {
				break
			}
			s.stack = s.stack[:top]
		}
		if len(s.stack) == 0 {
			n := s.pos
			s.Reset()
			return s, n, nil
		}
	}
}

func (s ReplyScanner) fail() (ReplyScanner, int, error) {
	s.Reset()
	return s, 0, ErrBadReply
}

// valueLen is the length of the complete value at the front of b, or 0. Most values are not nested deeper
// than the array on the stack, so it does not allocate.
func valueLen(b []byte) int {
	var st [16]int
	_, n, err := ReplyScanner{stack: st[:0]}.scan1(b)
	if err != nil {
		return 0
	}
	return n
}

// IsError tells whether reply is an error reply.
func IsError(reply []byte) bool { return len(reply) > 0 && reply[0] == '-' }

// ParseInt reads an integer reply, ":<n>\r\n", and nothing else.
func ParseInt(reply []byte) (int64, bool) {
	if len(reply) < 4 || reply[0] != ':' || reply[len(reply)-2] != '\r' || reply[len(reply)-1] != '\n' {
		return 0, false
	}
	return ParseDecimal(reply[1 : len(reply)-2])
}

// header splits off the "<typ><n>\r\n" header of a bulk or aggregate reply.
func header(reply []byte, typ byte) (n int64, body []byte, ok bool) {
	if len(reply) < 4 || reply[0] != typ {
		return 0, nil, false
	}
	nl := bytes.IndexByte(reply, '\n')
	if nl < 3 || reply[nl-1] != '\r' {
		return 0, nil, false
	}
	n, ok = ParseDecimal(reply[1 : nl-1])
	if !ok || n < -1 || n > maxReplyLen {
		return 0, nil, false
	}
	return n, reply[nl+1:], true
}

// BulkValue reads a bulk string reply that spans all of reply; isNull for "$-1".
func BulkValue(reply []byte) (val []byte, isNull bool, ok bool) {
	n, body, ok := header(reply, '$')
	switch {
	case !ok:
		return nil, false, false
	case n == -1:
		if len(body) != 0 {
			return nil, false, false
		}
		return nil, true, true
	case int64(len(body)) != n+2 || body[n] != '\r' || body[n+1] != '\n':
		return nil, false, false
	}
	return body[:n:n], false, true
}

// ArrayLen reads the element count of an array reply; -1 for a null array ("*-1").
func ArrayLen(reply []byte) (int, bool) {
	n, _, ok := header(reply, '*')
	return int(n), ok
}

// ArrayElems appends the raw bytes of each element of the array reply (each a complete RESP value) to dst,
// for merging the replies of a fanned-out command without decoding them. A null array ("*-1") appends
// nothing and is ok; ArrayLen tells it from "*0". dst grows only by elements actually present, whatever
// count the header declares. ok is false if reply is not exactly one well-formed array.
func ArrayElems(reply []byte, dst [][]byte) (elems [][]byte, ok bool) {
	return aggregateElems(reply, '*', 1, dst)
}

// MapElems is ArrayElems for a RESP3 map ("%<n>"): it appends each key and each value, 2n elements in order.
func MapElems(reply []byte, dst [][]byte) (elems [][]byte, ok bool) {
	return aggregateElems(reply, '%', 2, dst)
}

func aggregateElems(reply []byte, typ byte, per int64, dst [][]byte) (elems [][]byte, ok bool) {
	n, body, ok := header(reply, typ)
	if !ok {
		return dst, false
	}
	if n == -1 {
		return dst, typ == '*' && len(body) == 0
	}
	off, keep := len(reply)-len(body), len(dst)
	for i := int64(0); i < n*per; i++ {
		l := valueLen(reply[off:])
		if l == 0 {
			return dst[:keep], false
		}
		dst = append(dst, reply[off:off+l:off+l])
		off += l
	}
	if off != len(reply) {
		return dst[:keep], false
	}
	return dst, true
}

// VerbatimValue reads a RESP3 verbatim string reply ("=<n>\r\ntxt:...") that spans all of reply.
func VerbatimValue(reply []byte) (format string, text []byte, ok bool) {
	n, body, ok := header(reply, '=')
	if !ok || n < 4 || int64(len(body)) != n+2 || body[3] != ':' || body[n] != '\r' || body[n+1] != '\n' {
		return "", nil, false
	}
	return string(body[:3]), body[4:n:n], true
}

// ScalarText is the text of a bulk string, simple string, integer, double or big number reply (a sorted
// set's score is a bulk in RESP2 and a double in RESP3), for a command built from what a reply said; ok is
// false for anything else, nulls included.
func ScalarText(reply []byte) ([]byte, bool) {
	if len(reply) > 0 && reply[0] == '$' {
		v, isNull, ok := BulkValue(reply)
		return v, ok && !isNull
	}
	if len(reply) < 4 || reply[len(reply)-2] != '\r' || reply[len(reply)-1] != '\n' {
		return nil, false
	}
	switch reply[0] {
	case '+', ':', ',', '(':
		line := reply[1 : len(reply)-2]
		return line, bytes.IndexByte(line, '\r') < 0 && bytes.IndexByte(line, '\n') < 0
	}
	return nil, false
}
