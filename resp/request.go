// Package resp reads and writes the Redis wire protocol (RESP2 requests; RESP2 and RESP3 replies) from and
// into byte slices. It knows nothing about commands or the network. The readers return sub-slices of their
// input and are resumable, so a gnet event loop can hand them whatever has arrived so far, and the writers
// append to a caller-owned buffer, strconv style. Nothing on the hot path allocates in steady state, and
// nothing is ever sized from a count or a length read off the wire.
package resp

import "bytes"

// Scratch buffers larger than these are dropped after use, so one huge request does not pin its memory for
// the life of the connection.
const (
	maxKeepArgs   = 1024 // Redis's argv starts at min(count, 1024)
	maxKeepInline = MaxInlineSize
)

// span is an argument as an offset into the caller's buffer (multibulk) or into unq (inline). Offsets, not
// slices, survive the buffer moving between calls.
type span struct{ off, n uint32 } // a query buffer is at most 1 GiB (MaxQueryBuffer), so offsets fit

// CommandParser parses client requests exactly as Redis 7.0.15 does (networking.c processMultibulkBuffer,
// processInlineBuffer, sds.c sdssplitargs), including two quirks a proxy must copy to be transparent:
//   - Redis finds the end of a line with strchr, so a NUL byte before the end hides it: the request never
//     completes and fails with a "too big" error once more than MaxInlineSize bytes are buffered.
//   - The "too big" errors are raised only when no line end is buffered yet. A longer line that arrives
//     together with its end is accepted, so, as with Redis, lines over 64 KiB may succeed or fail depending
//     on how the bytes are chunked. For any input of at most MaxInlineSize bytes the outcome does not
//     depend on chunking.
//
// The zero value is ready to use. A CommandParser belongs to one connection and is not safe for concurrent
// use.
type CommandParser struct {
	args  [][]byte // returned by Parse and reused by the next call
	spans []span   // completed elements of the multibulk in progress; inline: the unquoted arguments in unq
	unq   []byte   // unquoted inline arguments

	argc    int  // elements declared by the multibulk in progress; 0 when none is in progress
	pos     int  // offset in buf of the next unparsed byte of the multibulk in progress
	bulkLen int  // length of the element whose header was read; -1 before its header
	scan    int  // offset in buf before which the current line is known to hold no line end
	nul     bool // the current line holds a NUL before its end, so it never ends
	need    int  // len(buf) needed before another call can make progress

	// Unauthenticated: Redis's limits for a client that has not authenticated yet apply (at most
	// UnauthMaxArgs arguments of at most UnauthMaxBulk bytes each).
	Unauthenticated bool
}

// Redis's limits on a request of a client that must authenticate and has not (processMultibulkBuffer).
const (
	UnauthMaxArgs = 10
	UnauthMaxBulk = 16384
)

// Need is the buffer length at which calling Parse again can make progress. A caller may skip both the call
// and gathering the bytes (gnet's Peek) until that many are buffered: while a 500 MB bulk arrives, each
// read costs O(1) instead of a copy of everything so far.
func (p *CommandParser) Need() int { return p.need }

// Reset forgets a partial request, for a caller that throws away the bytes it was parsing. Parse resets the
// parser itself after an error.
func (p *CommandParser) Reset() {
	p.spans = p.spans[:0]
	p.argc, p.pos, p.bulkLen, p.scan, p.nul, p.need = 0, 0, -1, 0, false, 0
}

// Forget lets go of the last request's arguments, which point into the caller's buffer, for a parser that
// goes unused for a while (its scratch is bounded already: maxKeepArgs, maxKeepInline).
func (p *CommandParser) Forget() {
	clear(p.args)
	p.args = p.args[:0]
}

// ScratchBytes is the memory the parser keeps for the next requests.
func (p *CommandParser) ScratchBytes() int {
	return 24*cap(p.args) + 8*cap(p.spans) + cap(p.unq)
}

// Parse parses the request at the front of buf, which must start at the first byte not yet consumed. It
// returns the arguments and the number of bytes the request took:
//   - A complete request: args are sub-slices of buf (inline requests: of the parser's own buffer, since
//     they are unquoted), valid until buf changes or the next call, and n > 0.
//   - An empty request (an empty or blank inline line, "*0", "*-1"): args == nil and n > 0. Redis sends no
//     reply for it.
//   - An incomplete request: args == nil, n == 0, err == nil. The progress made is kept as offsets, so the
//     next call must get a buf that starts with the same bytes (at any address, possibly longer); it resumes
//     where this one stopped, and a request arriving in pieces is parsed once, not once per piece.
//   - A malformed request: a ProtocolError. The caller replies "-ERR "+err.Error() and closes the
//     connection, as Redis does. The parser is reset.
func (p *CommandParser) Parse(buf []byte) (args [][]byte, n int, err error) {
	if p.argc == 0 {
		if len(buf) == 0 {
			p.need = 1
			return nil, 0, nil
		}
		if buf[0] != '*' {
			return p.parseInline(buf)
		}
		cr, err := p.lineEnd(buf, 0, '\r', ErrTooBigMbulkCount)
		if cr < 0 {
			return nil, 0, err
		}
		if cr+1 >= len(buf) { // Redis wants one more byte after the '\r' and never looks at it
			p.need = cr + 2
			return nil, 0, nil
		}
		count, ok := ParseDecimal(buf[1:cr])
		if !ok || count > maxMultibulk {
			p.Reset()
			return nil, 0, ErrInvalidMultibulkLength
		}
		if count > UnauthMaxArgs && p.Unauthenticated {
			p.Reset()
			return nil, 0, ErrUnauthMultibulkLength
		}
		if count <= 0 {
			p.Reset()
			return nil, cr + 2, nil
		}
		p.Reset()
		p.argc = int(count) // only a counter: spans grows as elements arrive, never from count
		p.pos = cr + 2
	}
	if p.pos > len(buf) { // the caller broke the contract; don't panic on its event loop
		p.need = p.pos
		return nil, 0, nil
	}
	for len(p.spans) < p.argc {
		if p.bulkLen < 0 {
			cr, err := p.lineEnd(buf, p.pos, '\r', ErrTooBigBulkCount)
			if cr < 0 {
				return nil, 0, err
			}
			if cr+1 >= len(buf) {
				p.need = cr + 2
				return nil, 0, nil
			}
			if c := buf[p.pos]; c != '$' {
				p.Reset()
				return nil, 0, ExpectedDollar(c)
			}
			l, ok := ParseDecimal(buf[p.pos+1 : cr])
			if !ok || l < 0 || l > MaxBulkLen {
				p.Reset()
				return nil, 0, ErrInvalidBulkLength
			}
			if l > UnauthMaxBulk && p.Unauthenticated {
				p.Reset()
				return nil, 0, ErrUnauthBulkLength
			}
			p.pos = cr + 2
			p.bulkLen = int(l)
		}
		end := p.pos + p.bulkLen + 2 // Redis skips the two bytes after the data without looking at them
		if len(buf) < end {
			p.need = end
			return nil, 0, nil
		}
		if len(p.spans) == cap(p.spans) {
			// Redis's growth (min(count, 1024), then doubling up to the count), not append's 1.25: a request
			// of a million arguments would allocate five times its spans.
			p.spans = append(make([]span, 0, min(max(2*cap(p.spans), 16), p.argc)), p.spans...)
		}
		p.spans = append(p.spans, span{uint32(p.pos), uint32(p.bulkLen)})
		p.pos = end
		p.bulkLen = -1
	}
	args = p.collect(buf)
	n = p.pos
	p.Reset()
	return args, n, nil
}

// collect turns spans over src into p.args.
func (p *CommandParser) collect(src []byte) [][]byte {
	args := p.args[:0]
	if cap(args) < len(p.spans) {
		args = make([][]byte, 0, len(p.spans))
	}
	for _, s := range p.spans {
		off, end := int(s.off), int(s.off)+int(s.n)
		args = append(args, src[off:end:end])
	}
	if prev := len(p.args); prev > len(args) {
		clear(p.args[len(args):prev]) // a wider request's arguments must not pin its buffer
	}
	if cap(args) > maxKeepArgs {
		p.args = nil // args stays valid for the caller; only the parser lets go of it
	} else {
		p.args = args
	}
	if cap(p.spans) > maxKeepArgs {
		p.spans = nil
	}
	return args
}

// lineEnd returns the offset of the first term at or after start, or -1 if the line is not complete (with
// p.need set) or too long (with tooBig). Like Redis's strchr it stops at a NUL. It resumes at p.scan, so a
// line arriving one byte at a time is searched once, not once per byte.
func (p *CommandParser) lineEnd(buf []byte, start int, term byte, tooBig error) (int, error) {
	if !p.nul {
		i := min(max(p.scan, start), len(buf))
		// Most lines are a few bytes ("$3\r"): look at them directly before paying for IndexByte calls.
		for end := min(i+16, len(buf)); i < end && buf[i] != term && buf[i] != 0; i++ {
		}
		if i < len(buf) && buf[i] != term && buf[i] != 0 {
			seg := buf[i:]
			k := bytes.IndexByte(seg, term)
			if k >= 0 {
				seg = seg[:k]
			}
			if z := bytes.IndexByte(seg, 0); z >= 0 {
				i += z
			} else if k >= 0 {
				i += k
			} else {
				i = len(buf)
			}
		}
		switch {
		case i == len(buf):
			p.scan = i
		case buf[i] == term:
			p.scan = i
			return i, nil
		default:
			p.nul = true
		}
	}
	if len(buf)-start > MaxInlineSize {
		p.Reset()
		return -1, tooBig
	}
	if p.nul {
		p.need = start + MaxInlineSize + 1 // nothing can happen before the line is too big
	} else {
		p.need = len(buf) + 1
	}
	return -1, nil
}

func (p *CommandParser) parseInline(buf []byte) ([][]byte, int, error) {
	nl, err := p.lineEnd(buf, 0, '\n', ErrTooBigInline)
	if nl < 0 {
		return nil, 0, err
	}
	line := buf[:nl]
	if nl > 0 && line[nl-1] == '\r' {
		line = line[:nl-1]
	}
	if !p.splitArgs(line) {
		p.Reset()
		return nil, 0, ErrUnbalancedQuotes
	}
	var args [][]byte
	if len(p.spans) > 0 {
		args = p.collect(p.unq)
	}
	if cap(p.unq) > maxKeepInline {
		p.unq = nil
	}
	p.Reset()
	return args, nl + 1, nil
}

// SplitArgs is Redis's sdssplitargs over line (which holds no NUL), as inline requests and config lines
// are split; ok false on unbalanced quotes or a closing quote followed by other than a blank.
func SplitArgs(line []byte) (args [][]byte, ok bool) {
	var p CommandParser
	if !p.splitArgs(line) {
		return nil, false
	}
	if len(p.spans) == 0 {
		return nil, true
	}
	return p.collect(p.unq), true
}

// splitArgs is sdssplitargs over line (which holds no NUL): blanks separate arguments; "..." understands
// \xHH, \n, \r, \t, \b, \a and \<any>; '...' understands \'; a closing quote must be followed by a blank or
// the end. The arguments go to p.unq, their positions to p.spans. at() returns 0 past the end, standing in
// for C's terminating NUL, so the code can follow the C line by line.
func (p *CommandParser) splitArgs(line []byte) bool {
	out := p.unq[:0]
	spans := p.spans[:0]
	ok := true
	i := 0
	for ok {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			break
		}
		start := len(out)
		inq, insq := false, false
		for done := false; !done && ok; {
			c := at(line, i)
			switch {
			case inq:
				switch {
				case c == '\\' && at(line, i+1) == 'x' && isHex(at(line, i+2)) && isHex(at(line, i+3)):
					out = append(out, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 3
				case c == '\\' && at(line, i+1) != 0:
					i++
					switch e := line[i]; e {
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
						out = append(out, e)
					}
				case c == '"':
					ok = at(line, i+1) == 0 || isSpace(at(line, i+1))
					done = true
				case c == 0:
					ok = false
				default:
					out = append(out, c)
				}
			case insq:
				switch {
				case c == '\\' && at(line, i+1) == '\'':
					i++
					out = append(out, '\'')
				case c == '\'':
					ok = at(line, i+1) == 0 || isSpace(at(line, i+1))
					done = true
				case c == 0:
					ok = false
				default:
					out = append(out, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0: // not \v or \f: isspace() skips them between arguments only
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
		spans = append(spans, span{uint32(start), uint32(len(out) - start)})
	}
	p.unq, p.spans = out, spans
	return ok
}

func at(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// isSpace is C's isspace in the C locale.
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
