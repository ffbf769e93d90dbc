package command

import "bytes"

// KeyIndexes appends the positions in args of every key of the request, in order, as Redis's
// getKeysFromCommandWithSpecs (COMMAND GETKEYS) finds them. ok is false when the request's own key-count
// arguments are invalid; the caller then lets a real server answer with its error.
func KeyIndexes(c *Command, args [][]byte, dst []int) (idx []int, ok bool) {
	switch c.Name {
	case "sort", "sort_ro":
		return sortKeys(args, dst), true
	case "migrate":
		return migrateKeys(args, dst), true
	}
	argc := len(args)
	for i := range c.KeySpecs {
		s := &c.KeySpecs[i]
		first := 0
		switch s.BS {
		case BSIndex:
			first = s.BSIndex
		case BSKeyword:
			start, end := s.BSStartFrom, argc-1
			if start <= 0 {
				start, end = argc+s.BSStartFrom, 0
			}
			for j := start; j != end; {
				if j >= argc || j < 1 {
					break
				}
				if bytes.EqualFold(args[j], []byte(s.BSKeyword)) {
					first = j + 1
					break
				}
				if start <= end {
					j++
				} else {
					j--
				}
			}
			if first == 0 {
				continue // keyword absent: no keys from this spec
			}
		default:
			continue
		}
		var last, step int
		switch s.FK {
		case FKRange:
			step = s.KeyStep
			switch {
			case s.LastKey >= 0:
				last = first + s.LastKey
			case s.Limit == 0:
				last = argc + s.LastKey
			default:
				last = first + ((argc-first)/s.Limit + s.LastKey)
			}
		case FKKeynum:
			step = s.KeyStep
			if s.KeynumIdx >= argc-first {
				return dst, false
			}
			n, good := atoi(args[first+s.KeynumIdx])
			if !good || n < 0 {
				return dst, false
			}
			if n == 0 {
				continue
			}
			first += s.FirstKey
			last = first + n - 1
		default:
			continue
		}
		if last >= argc || last < first || first >= argc {
			return dst, false
		}
		for j := first; j <= last; j += step {
			dst = append(dst, j)
		}
	}
	return dst, true
}

// sortKeys is Redis's sortGetKeys: the sorted key, and the last STORE destination.
func sortKeys(args [][]byte, dst []int) []int {
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		switch a := args[i]; {
		case bytes.EqualFold(a, []byte("limit")):
			i += 2
		case bytes.EqualFold(a, []byte("get")), bytes.EqualFold(a, []byte("by")):
			i++
		case bytes.EqualFold(a, []byte("store")) && i+1 < len(args):
			store = i + 1
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// migrateKeys is Redis's migrateGetKeys: argument 3, or the list after KEYS.
func migrateKeys(args [][]byte, dst []int) []int {
	first, num := 3, 1
	for i := 6; i < len(args); i++ {
		a := args[i]
		if bytes.EqualFold(a, []byte("keys")) {
			if len(args[3]) > 0 {
				return dst
			}
			first, num = i+1, len(args)-i-1
			break
		}
		switch {
		case bytes.EqualFold(a, []byte("auth")):
			i++
		case bytes.EqualFold(a, []byte("auth2")):
			i += 2
		}
	}
	for i := 0; i < num; i++ {
		dst = append(dst, first+i)
	}
	return dst
}

// atoi parses a non-huge decimal integer like Redis's string2ll.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
