// Package resp reads and writes the Redis wire protocol (RESP2, plus the RESP3 reply types) from and into
// byte slices. It knows nothing about commands or the network. Readers return sub-slices of their input and
// are resumable, so a gnet event loop can feed them whatever has arrived so far.
package resp

import "bytes"

// Limits, the same as Redis 7.0's defaults.
const (
	MaxBulkLen     = 512 << 20 // proto-max-bulk-len
	MaxInlineSize  = 64 << 10  // PROTO_INLINE_MAX_SIZE: an inline request or a count line
	MaxQueryBuffer = 1 << 30   // client-query-buffer-limit
	maxMultibulk   = 1<<31 - 1 // INT_MAX
)

// ProtocolError is a malformed request; its text is Redis's. The connection is closed after the reply.
type ProtocolError string

func (e ProtocolError) Error() string { return "Protocol error: " + string(e) }

var (
	ErrInvalidMultibulkLength = ProtocolError("invalid multibulk length")
	ErrInvalidBulkLength      = ProtocolError("invalid bulk length")
	ErrTooBigMbulkCount       = ProtocolError("too big mbulk count string")
	ErrTooBigBulkCount        = ProtocolError("too big bulk count string")
	ErrTooBigInline           = ProtocolError("too big inline request")
	ErrUnbalancedQuotes       = ProtocolError("unbalanced quotes in request")
)

// ExpectedDollar is the error for a multibulk element that is not a bulk string.
func ExpectedDollar(c byte) error {
	return ProtocolError("expected '$', got '" + string([]byte{c}) + "'")
}

type span struct{ off, n int }

// CommandParser parses client requests. It keeps offsets, not pointers, between calls, so a request that
// arrives in pieces is parsed once, whatever the buffer's address on the next call.
type CommandParser struct {
	args    [][]byte // returned to the caller, reused
	spans   []span   // elements of the multibulk in progress
	argc    int      // declared element count; 0 when no multibulk is in progress
	pos     int      // next byte to parse in the multibulk in progress
	bulkLen int      // length of the element whose header was read, -1 if none
	need    int      // len(buf) needed before another call can make progress
	inline  []byte   // unquoted inline arguments
}

// Need is the buffer length at which calling Parse again can make progress.
func (p *CommandParser) Need() int { return p.need }

// Reset forgets a partial request.
func (p *CommandParser) Reset() {
	p.spans = p.spans[:0]
	p.argc, p.pos, p.bulkLen, p.need = 0, 0, -1, 0
}

// Parse parses the request at the front of buf. It returns the arguments (sub-slices of buf, or of the
// parser's own buffer for inline requests; valid until the next call) and the bytes consumed. An empty
// request (an empty line, "*0") is consumed with no arguments. An incomplete request returns n == 0 and
// leaves its progress in the parser: the next call must get a buf that starts with the same bytes.
func (p *CommandParser) Parse(buf []byte) (args [][]byte, n int, err error) {
	if p.argc == 0 {
		if len(buf) == 0 {
			p.need = 1
			return nil, 0, nil
		}
		if buf[0] != '*' {
			return p.parseInline(buf)
		}
		cr := bytes.IndexByte(buf, '\r')
		if cr < 0 {
			if len(buf) > MaxInlineSize {
				return nil, 0, ErrTooBigMbulkCount
			}
			p.need = len(buf) + 1
			return nil, 0, nil
		}
		if cr+1 >= len(buf) {
			p.need = cr + 2
			return nil, 0, nil
		}
		count, ok := parseInt(buf[1:cr])
		if !ok || count > maxMultibulk {
			return nil, 0, ErrInvalidMultibulkLength
		}
		if count <= 0 {
			p.need = 0
			return nil, cr + 2, nil
		}
		p.argc = int(count)
		p.pos = cr + 2
		p.bulkLen = -1
		p.spans = p.spans[:0]
	}
	for len(p.spans) < p.argc {
		if p.bulkLen < 0 {
			rest := buf[p.pos:]
			cr := bytes.IndexByte(rest, '\r')
			if cr < 0 {
				if len(rest) > MaxInlineSize {
					return nil, 0, p.fail(ErrTooBigBulkCount)
				}
				p.need = len(buf) + 1
				return nil, 0, nil
			}
			if cr+1 >= len(rest) {
				p.need = p.pos + cr + 2
				return nil, 0, nil
			}
			if rest[0] != '$' {
				return nil, 0, p.fail(ExpectedDollar(rest[0]))
			}
			l, ok := parseInt(rest[1:cr])
			if !ok || l < 0 || l > MaxBulkLen {
				return nil, 0, p.fail(ErrInvalidBulkLength)
			}
			p.pos += cr + 2
			p.bulkLen = int(l)
		}
		if end := p.pos + p.bulkLen + 2; len(buf) < end {
			p.need = end
			return nil, 0, nil
		}
		p.spans = append(p.spans, span{p.pos, p.bulkLen})
		p.pos += p.bulkLen + 2 // Redis skips the two bytes after the data without looking at them
		p.bulkLen = -1
	}
	args = p.args[:0]
	for _, s := range p.spans {
		args = append(args, buf[s.off:s.off+s.n:s.off+s.n])
	}
	p.args = args
	n = p.pos
	p.argc, p.pos, p.need = 0, 0, 0
	if cap(p.spans) > 1024 {
		p.spans = nil // one huge request must not pin its offsets
	}
	return args, n, nil
}

func (p *CommandParser) fail(err error) error {
	p.Reset()
	return err
}

func (p *CommandParser) parseInline(buf []byte) ([][]byte, int, error) {
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		if len(buf) > MaxInlineSize {
			return nil, 0, ErrTooBigInline
		}
		p.need = len(buf) + 1
		return nil, 0, nil
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, ok := p.splitArgs(line)
	if !ok {
		return nil, 0, ErrUnbalancedQuotes
	}
	p.need = 0
	return args, nl + 1, nil
}

// splitArgs splits an inline request like Redis's sdssplitargs: blanks separate arguments, "..." supports
// \xHH, \n, \r, \t, \b, \a and \<c>; '...' supports \'; a closing quote must be followed by a blank or the end.
func (p *CommandParser) splitArgs(line []byte) ([][]byte, bool) {
	out := p.inline[:0]
	var ends []int // end offset of each argument in out; small, on the stack for the usual case
	var endsBuf [16]int
	ends = endsBuf[:0]
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			break
		}
		inq, insq := false, false
		for done := false; !done; {
			switch {
			case inq:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					out = append(out, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				} else if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						out = append(out, '\n')
					case 'r':
						out = append(out, '\r')
					case 't':
						out = append(out, '\t')
					case 'b':
						out = append(out, '\b')
					case 'a':
						out = append(out, '\a')
					default:
						out = append(out, line[i])
					}
				} else if c == '"' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				} else {
					out = append(out, c)
				}
			case insq:
				if i >= len(line) {
					return nil, false
				}
				c := line[i]
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					i++
					out = append(out, '\'')
				} else if c == '\'' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, false
					}
					done = true
				} else {
					out = append(out, c)
				}
			default:
				if i >= len(line) {
					done = true
					break
				}
				switch c := line[i]; c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					out = append(out, c)
				}
			}
			if i < len(line) {
				i++
			}
		}
		ends = append(ends, len(out))
	}
	p.inline = out
	args := p.args[:0]
	start := 0
	for _, e := range ends {
		args = append(args, out[start:e:e])
		start = e
	}
	p.args = args
	return args, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// parseInt is Redis's string2ll: optional '-', no '+', no leading zeros, no blanks, at most 20 bytes.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	if b[0] == '-' {
		neg = true
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}
