package acl

// Match is Redis's glob-style matching, stringmatchlen(pattern, str, nocase=0) of util.c, as key and
// channel patterns use it: '*' any run of bytes, '?' one byte, "[abc]", "[^abc]", "[a-z]" (bounds in any
// order, compared as C's signed chars), '\' escapes the next byte (also inside brackets), and a '[' that is
// never closed takes the rest of the pattern as its set. '*' does not match the empty string as a whole
// ("*" matches neither ""; "" matches only ""). As in Redis since CVE-2024-31228's fix, which the reference
// server carries, a pattern does not match once more than 1000 '*' are nested; and a failed '*' stops the
// other tries (skipLongerMatches), so matching takes at most about len(pattern)*len(str) steps.
func Match(pattern, str string) bool {
	skip := false
	return match(pattern, str, &skip, 0)
}

func matchBytes(pattern string, str []byte) bool {
	skip := false
	return match(pattern, str, &skip, 0)
}

// match is stringmatchlen_impl. p and s index the pattern and the string (pattern and patternLen, string
// and stringLen in C, which always move together); at gives the NUL that follows a C string past its end.
func match[S string | []byte](pat string, str S, skip *bool, nesting int) bool {
	if nesting > 1000 {
		return false
	}
	at := func(i int) byte {
		if i < len(pat) {
			return pat[i]
		}
		return 0
	}
	p, s := 0, 0
	for p < len(pat) && s < len(str) {
		switch pat[p] {
		case '*':
			for p < len(pat) && at(p+1) == '*' {
				p++
			}
			if len(pat)-p == 1 {
				return true
			}
			for s < len(str) {
				if match(pat[p+1:], str[s:], skip, nesting+1) {
					return true
				}
				if *skip {
					return false
				}
				s++
			}
			*skip = true
			return false
		case '?':
			s++
		case '[':
			p++
			not := at(p) == '^'
			if not {
				p++
			}
			matched := false
			c := str[s]
			for {
				if at(p) == '\\' && len(pat)-p >= 2 {
					p++
					if pat[p] == c {
						matched = true
					}
				} else if at(p) == ']' {
					break
				} else if p >= len(pat) {
					p--
					break
				} else if len(pat)-p >= 3 && pat[p+1] == '-' {
					start, end := int(int8(pat[p])), int(int8(pat[p+2]))
					if start > end {
						start, end = end, start
					}
					p += 2
					if x := int(int8(c)); x >= start && x <= end {
						matched = true
					}
				} else if pat[p] == c {
					matched = true
				}
				p++
			}
			if not {
				matched = !matched
			}
			if !matched {
				return false
			}
			s++
		case '\\':
			if len(pat)-p >= 2 {
				p++
			}
			if pat[p] != str[s] {
				return false
			}
			s++
		default:
			if pat[p] != str[s] {
				return false
			}
			s++
		}
		p++
		if s == len(str) {
			for at(p) == '*' {
				p++
			}
			break
		}
	}
	return p == len(pat) && s == len(str)
}
