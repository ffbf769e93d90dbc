package resp

import (
	"bytes"
	"errors"
)

// maxDepth bounds the nesting of a reply.
const maxDepth = 1024

// ErrBadReply is a reply that is not valid RESP.
var ErrBadReply = errors.New("resp: malformed reply")

// ReplyScanner finds the end of each reply in a stream. Like CommandParser it keeps offsets between calls, so
// a large reply arriving in pieces is scanned once.
type ReplyScanner struct {
	pos   int   // next byte to scan
	stack []int // elements still expected by each open aggregate
	need  int
}

// Need is the buffer length at which Scan can make progress.
func (s *ReplyScanner) Need() int { return s.need }

// Reset forgets a partial reply.
func (s *ReplyScanner) Reset() {
	s.pos, s.need = 0, 0
	s.stack = s.stack[:0]
}

// Scan returns the length of the complete reply at the front of buf, or 0 when it is not complete yet. Until
// it returns a length, each call must get a buf that starts with the same bytes.
func (s *ReplyScanner) Scan(buf []byte) (int, error) {
	for {
		rest := buf[s.pos:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			s.need = len(buf) + 1
			return 0, nil
		}
		if nl < 2 || rest[nl-1] != '\r' {
			return 0, s.fail()
		}
		line := rest[1 : nl-1]
		switch rest[0] {
		case '+', '-', ':', '_', ',', '#', '(':
			s.pos += nl + 1
		case '$', '!', '=':
			n, ok := parseInt(line)
			if !ok || n < -1 || (n == -1 && rest[0] != '$') || n > 1<<40 {
				return 0, s.fail()
			}
			end := s.pos + nl + 1
			if n >= 0 {
				end += int(n) + 2
			}
			if len(buf) < end {
				s.need = end
				return 0, nil
			}
			s.pos = end
		case '*', '%', '~', '>':
			n, ok := parseInt(line)
			if !ok || n < -1 || (n == -1 && rest[0] != '*') || n > 1<<40 {
				return 0, s.fail()
			}
			s.pos += nl + 1
			if rest[0] == '%' {
				n *= 2
			}
			if n > 0 {
				if len(s.stack) >= maxDepth {
					return 0, s.fail()
				}
				s.stack = append(s.stack, int(n))
				continue
			}
		default:
			return 0, s.fail()
		}
		// One value is complete: close the aggregates it completes.
		for len(s.stack) > 0 {
			top := len(s.stack) - 1
			s.stack[top]--
			if s.stack[top] > 0 {
				break
			}
			s.stack = s.stack[:top]
		}
		if len(s.stack) == 0 {
			n := s.pos
			s.pos, s.need = 0, 0
			return n, nil
		}
	}
}

func (s *ReplyScanner) fail() error {
	s.Reset()
	return ErrBadReply
}

// valueLen is the length of the complete value at the front of b, or 0.
func valueLen(b []byte) int {
	var st [16]int
	s := ReplyScanner{stack: st[:0]}
	n, err := s.Scan(b)
	if err != nil {
		return 0
	}
	return n
}

// IsError tells whether reply is an error reply.
func IsError(reply []byte) bool { return len(reply) > 0 && reply[0] == '-' }

// ParseInt reads an integer reply.
func ParseInt(reply []byte) (int64, bool) {
	if len(reply) < 4 || reply[0] != ':' || reply[len(reply)-2] != '\r' {
		return 0, false
	}
	return parseInt(reply[1 : len(reply)-2])
}

// BulkValue reads a bulk string reply; isNull for $-1.
func BulkValue(reply []byte) (val []byte, isNull bool, ok bool) {
	if len(reply) < 4 || reply[0] != '$' {
		return nil, false, false
	}
	nl := bytes.IndexByte(reply, '\n')
	if nl < 2 {
		return nil, false, false
	}
	n, good := parseInt(reply[1 : nl-1])
	if !good {
		return nil, false, false
	}
	if n == -1 {
		return nil, true, true
	}
	if n < 0 || len(reply) != nl+1+int(n)+2 {
		return nil, false, false
	}
	return reply[nl+1 : nl+1+int(n)], false, true
}

// ArrayElems appends the bytes of each element of an array reply to dst. A null array yields no elements.
func ArrayElems(reply []byte, dst [][]byte) ([][]byte, bool) {
	if len(reply) < 4 || reply[0] != '*' {
		return dst, false
	}
	nl := bytes.IndexByte(reply, '\n')
	if nl < 2 {
		return dst, false
	}
	n, ok := parseInt(reply[1 : nl-1])
	if !ok || n < -1 {
		return dst, false
	}
	off := nl + 1
	for i := int64(0); i < n; i++ {
		l := valueLen(reply[off:])
		if l == 0 {
			return dst, false
		}
		dst = append(dst, reply[off:off+l])
		off += l
	}
	return dst, off == len(reply)
}
