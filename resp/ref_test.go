package resp

// A reference for CommandParser: Redis 7.0.15's processInputBuffer, processMultibulkBuffer,
// processInlineBuffer, sdssplitargs and string2ll transliterated line by line, over a whole NUL-terminated
// buffer, sharing no code with the parser. FuzzCommandParser checks the parser against it, and TestLiveRedis
// checks both against a real server.

// parsed is what a connection saw after feeding a whole input.
type parsed struct {
	cmds     [][]string
	consumed int    // bytes of complete requests
	qbPos    int    // Redis's qb_pos when it stopped: also past the elements of a partial multibulk
	err      string // the protocol error's text, or ""
}

const refIntMax = 1<<31 - 1

func refParse(in []byte) parsed {
	q := append(append([]byte(nil), in...), 0) // an sds is NUL-terminated
	n := len(in)
	strchr := func(from int, c byte) int {
		for i := from; ; i++ {
			switch q[i] {
			case c:
				return i
			case 0:
				return -1
			}
		}
	}
	var r parsed
	pos := 0
	for pos < n {
		r.consumed, r.qbPos = pos, pos
		if q[pos] != '*' { // processInlineBuffer
			newline := strchr(pos, '\n')
			if newline < 0 {
				if n-pos > MaxInlineSize {
					r.err = "Protocol error: too big inline request"
				}
				return r
			}
			end := newline
			if newline != pos && q[newline-1] == '\r' {
				end--
			}
			argv, ok := refSplitArgs(q[pos:end])
			if !ok {
				r.err = "Protocol error: unbalanced quotes in request"
				return r
			}
			pos = newline + 1
			if len(argv) > 0 {
				r.cmds = append(r.cmds, argv)
			}
			continue
		}
		// processMultibulkBuffer
		newline := strchr(pos, '\r')
		if newline < 0 {
			if n-pos > MaxInlineSize {
				r.err = "Protocol error: too big mbulk count string"
			}
			return r
		}
		if newline-pos > n-pos-2 {
			return r
		}
		ll, ok := refString2ll(q[pos+1 : newline])
		if !ok || ll > refIntMax {
			r.err = "Protocol error: invalid multibulk length"
			return r
		}
		p := newline + 2
		if ll <= 0 {
			pos = p
			continue
		}
		multibulklen, bulklen := ll, int64(-1)
		var argv []string
		for multibulklen > 0 {
			if bulklen == -1 {
				newline := strchr(p, '\r')
				if newline < 0 {
					if n-p > MaxInlineSize {
						r.err = "Protocol error: too big bulk count string"
					}
					break
				}
				if newline-p > n-p-2 {
					break
				}
				if q[p] != '$' {
					r.err = "Protocol error: expected '$', got '" + string(q[p:p+1]) + "'"
					return r
				}
				ll, ok := refString2ll(q[p+1 : newline])
				if !ok || ll < 0 || ll > MaxBulkLen {
					r.err = "Protocol error: invalid bulk length"
					return r
				}
				p = newline + 2
				bulklen = ll
			}
			if int64(n-p) < bulklen+2 {
				break
			}
			argv = append(argv, string(q[p:p+int(bulklen)]))
			p += int(bulklen) + 2
			bulklen = -1
			multibulklen--
		}
		if multibulklen > 0 {
			r.qbPos = p
			return r
		}
		r.cmds = append(r.cmds, argv)
		pos = p
	}
	r.consumed, r.qbPos = pos, pos
	return r
}

func refString2ll(s []byte) (int64, bool) {
	slen := len(s)
	if slen == 0 || slen >= 21 {
		return 0, false
	}
	if slen == 1 && s[0] == '0' {
		return 0, true
	}
	p, negative := 0, false
	if s[0] == '-' {
		negative = true
		p++
		if p == slen {
			return 0, false
		}
	}
	var v uint64
	if s[p] >= '1' && s[p] <= '9' {
		v = uint64(s[p] - '0')
		p++
	} else {
		return 0, false
	}
	for p < slen && s[p] >= '0' && s[p] <= '9' {
		if v > (1<<64-1)/10 {
			return 0, false
		}
		v *= 10
		if v > 1<<64-1-uint64(s[p]-'0') {
			return 0, false
		}
		v += uint64(s[p] - '0')
		p++
	}
	if p < slen {
		return 0, false
	}
	if negative {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

func refIsSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

func refIsHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func refHex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func refSplitArgs(line []byte) ([]string, bool) {
	s := append(append([]byte(nil), line...), 0)
	argv := []string{}
	p := 0
	for {
		for s[p] != 0 && refIsSpace(s[p]) {
			p++
		}
		if s[p] == 0 {
			return argv, true
		}
		var current []byte
		inq, insq, done := false, false, false
		for !done {
			switch {
			case inq:
				if s[p] == '\\' && s[p+1] == 'x' && refIsHex(s[p+2]) && refIsHex(s[p+3]) {
					current = append(current, refHex(s[p+2])*16+refHex(s[p+3]))
					p += 3
				} else if s[p] == '\\' && s[p+1] != 0 {
					p++
					c := s[p]
					switch c {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					}
					current = append(current, c)
				} else if s[p] == '"' {
					if s[p+1] != 0 && !refIsSpace(s[p+1]) {
						return nil, false
					}
					done = true
				} else if s[p] == 0 {
					return nil, false
				} else {
					current = append(current, s[p])
				}
			case insq:
				if s[p] == '\\' && s[p+1] == '\'' {
					p++
					current = append(current, '\'')
				} else if s[p] == '\'' {
					if s[p+1] != 0 && !refIsSpace(s[p+1]) {
						return nil, false
					}
					done = true
				} else if s[p] == 0 {
					return nil, false
				} else {
					current = append(current, s[p])
				}
			default:
				switch s[p] {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					current = append(current, s[p])
				}
			}
			if s[p] != 0 {
				p++
			}
		}
		argv = append(argv, string(current))
	}
}
