package command

import "github.com/slotproxy/slotproxy/resp"

// Finding the keys of a request, as Redis 7.0's COMMAND GETKEYS does (getKeysFromCommandWithSpecs in db.c):
//
//  1. If the command has a key spec that is a real key (not not_key) and none with variable_flags, walk the
//     specs (getKeysUsingKeySpecs). not_key specs are skipped. A spec whose BeginSearch or FindKeys is
//     unknown, whose key count does not parse, whose first or last key falls outside the arguments, or that
//     is incomplete makes the whole walk fail; otherwise its keys are the answer.
//  2. Otherwise, or if the walk failed, the command's getkeys procedure answers (getkeysProcs below, a
//     transcription of Redis's *GetKeys functions), if it has one; if not, there are no keys.
//
// Redis Cluster routes with getKeysFromCommand instead (getNodeByQuery in cluster.c): the getkeys procedure
// if the command has one, else the legacy key range. ClusterKeyIndexes is that; see KeyIndexes for where the
// two differ.

// KeyIndexes appends to dst the positions in args of every key of the request, in the order COMMAND GETKEYS
// lists them, and returns the extended slice. c must be the command Lookup returned with LookupOK for args.
//
// ok is false when the request's own key arguments are malformed, so that Redis finds no keys in it: a key
// count that is not a valid count for the remaining arguments ("EVAL s 5 a", "ZUNIONSTORE d 0 a"), or a
// missing keyword ("XREAD COUNT 1 k 0"). No positions are appended then; the caller lets a server answer
// with its own error. ok is true, with no positions, for commands without keys and for a valid zero key
// count of a command that may have none ("EVAL s 0").
//
// Where COMMAND GETKEYS and Redis Cluster's routing differ, KeyIndexes follows GETKEYS and
// ClusterKeyIndexes the cluster. For well-formed requests of Redis 7.0 they differ in:
//   - GEORADIUS and GEORADIUSBYMEMBER with both STORE and STOREDIST: GETKEYS lists both destinations, the
//     cluster only the last (the one the command writes);
//   - ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE: GETKEYS lists the destination first, the cluster last;
//   - SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE: GETKEYS finds no keys (the shard channels are not_key key specs),
//     the cluster routes by the channels.
//
// For malformed requests they differ more, for instance in XREAD with an odd number of arguments after
// STREAMS, or with "streams" as the value of an option, and in MIGRATE with KEYS as its last argument.
//
// KeyIndexes does not allocate when dst has room for the keys.
func KeyIndexes(c *Command, args [][]byte, dst []int) (idx []int, ok bool) {
	base := len(dst)
	res := specFailed
	if c.useSpecs {
		dst, res = specKeys(c, args, dst)
		if res == specOK {
			return dst, len(dst) > base || !c.hasKeys || c.Flags&NoMandatoryKeys != 0
		}
		dst = dst[:base]
	}
	if c.getkeys != nil {
		dst = c.getkeys(args, dst)
	}
	if len(dst) > base || !c.hasKeys {
		return dst, true
	}
	// No keys from a command that has some. GETKEYS replies "Invalid arguments specified for command",
	// except for a command that may have no keys, for which only a key count other than 0 is invalid.
	return dst, c.Flags&NoMandatoryKeys != 0 && res == specZeroCount
}

// ClusterKeyIndexes appends to dst the positions in args of the keys Redis Cluster routes by
// (getKeysFromCommand, which getNodeByQuery uses to pick the slot and to refuse CROSSSLOT requests): the
// command's getkeys procedure if it has one, else the legacy key range FirstKey, LastKey, Step. For a
// request that is too short for the range, it appends nothing (Redis leaves the error to the command).
// It does not allocate when dst has room for the keys.
func ClusterKeyIndexes(c *Command, args [][]byte, dst []int) []int {
	if c.getkeys != nil {
		return c.getkeys(args, dst)
	}
	if c.FirstKey <= 0 || c.Step <= 0 {
		return dst
	}
	last := c.LastKey
	if last < 0 {
		last += len(args)
	}
	base := len(dst)
	for i := c.FirstKey; i <= last; i += c.Step {
		if i >= len(args) {
			return dst[:base]
		}
		dst = append(dst, i)
	}
	return dst
}

type specResult uint8

const (
	specOK        specResult = iota
	specFailed               // Redis's invalid_spec: the walk's keys are dropped
	specZeroCount            // as specFailed, because a key count is 0 (Redis takes that as invalid)
)

// specKeys is Redis's getKeysUsingKeySpecs without GET_KEYSPEC_INCLUDE_NOT_KEYS and
// GET_KEYSPEC_RETURN_PARTIAL.
func specKeys(c *Command, args [][]byte, dst []int) ([]int, specResult) {
	return walkSpecs(c, args, dst, func(pos int, _ KeySpecFlag) int { return pos })
}

// walkSpecs is the walk of specKeys, appending what key makes of each key's position and spec flags.
func walkSpecs[T any](c *Command, args [][]byte, dst []T, key func(pos int, flags KeySpecFlag) T) ([]T, specResult) {
	argc := len(args)
	for i := range c.KeySpecs {
		s := &c.KeySpecs[i]
		if s.Flags&KeyNotKey != 0 {
			continue
		}
		first := 0
		switch s.BeginSearch {
		case BeginIndex:
			first = s.Index
		case BeginKeyword:
			// From StartFrom up to (not including) the last argument, or backwards from argc+StartFrom down
			// to (not including) argument 1.
			start, end := s.StartFrom, argc-1
			if s.StartFrom <= 0 {
				start, end = argc+s.StartFrom, 1
			}
			for j := start; j != end; {
				if j >= argc || j < 1 {
					break
				}
				if cstrEqualFold(args[j], s.Keyword) {
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
				continue // no keyword, no keys from this spec
			}
		default:
			return dst, specFailed
		}

		var last, step int
		zero := false
		switch s.FindKeys {
		case FindRange:
			step = s.KeyStep
			switch {
			case s.LastKey >= 0:
				last = first + s.LastKey
			case s.Limit == 0:
				last = argc + s.LastKey
			default:
				last = first + ((argc-first)/s.Limit + s.LastKey)
			}
		case FindKeynum:
			step = s.KeyStep
			// Redis checks only KeyNumIdx < argc and then reads argv[first+KeyNumIdx]; arity keeps every
			// built-in command within bounds. The second check keeps Go within them too.
			if s.KeyNumIdx >= argc || first+s.KeyNumIdx >= argc {
				return dst, specFailed
			}
			n, valid := resp.ParseDecimal(args[first+s.KeyNumIdx])
			if !valid || n < 0 {
				return dst, specFailed
			}
			zero = n == 0
			first += s.FirstKey
			last = first + int(int32(n)) - 1 // Redis casts the count to int
		default:
			return dst, specFailed
		}
		if last >= argc || last < first || first >= argc {
			if zero {
				return dst, specZeroCount
			}
			return dst, specFailed
		}
		for j := first; j <= last; j += step {
			dst = append(dst, key(j, s.Flags))
		}
		if s.Flags&KeyIncomplete != 0 {
			return dst, specFailed
		}
	}
	return dst, specOK
}

// getkeysProc is one of Redis's getkeys_proc functions: it appends the key positions of args to dst.
type getkeysProc func(args [][]byte, dst []int) []int

// getkeysProcs maps each Redis 7.0 command that has a getkeys_proc (commands.c) to its transcription. These
// are the commands that COMMAND flags movablekeys, plus SET and BITFIELD (variable_flags key specs).
var getkeysProcs = map[string]getkeysProc{
	"sort":              sortGetKeys,
	"sort_ro":           sortROGetKeys,
	"migrate":           migrateGetKeys,
	"georadius":         georadiusGetKeys,
	"georadiusbymember": georadiusGetKeys,
	"xread":             xreadGetKeys,
	"xreadgroup":        xreadGetKeys,
	"set":               firstArgGetKeys,            // setGetKeys: argument 1, only its flags vary
	"bitfield":          firstArgGetKeys,            // bitfieldGetKeys: likewise
	"eval":              genericGetKeys(0, 2, 3, 1), // evalGetKeys
	"evalsha":           genericGetKeys(0, 2, 3, 1),
	"eval_ro":           genericGetKeys(0, 2, 3, 1),
	"evalsha_ro":        genericGetKeys(0, 2, 3, 1),
	"fcall":             genericGetKeys(0, 2, 3, 1), // functionGetKeys
	"fcall_ro":          genericGetKeys(0, 2, 3, 1),
	"zunionstore":       genericGetKeys(1, 2, 3, 1), // zunionInterDiffStoreGetKeys
	"zinterstore":       genericGetKeys(1, 2, 3, 1),
	"zdiffstore":        genericGetKeys(1, 2, 3, 1),
	"zunion":            genericGetKeys(0, 1, 2, 1), // zunionInterDiffGetKeys
	"zinter":            genericGetKeys(0, 1, 2, 1),
	"zdiff":             genericGetKeys(0, 1, 2, 1),
	"zintercard":        genericGetKeys(0, 1, 2, 1),
	"sintercard":        genericGetKeys(0, 1, 2, 1), // sintercardGetKeys
	"lmpop":             genericGetKeys(0, 1, 2, 1), // lmpopGetKeys
	"zmpop":             genericGetKeys(0, 1, 2, 1), // zmpopGetKeys
	"blmpop":            genericGetKeys(0, 2, 3, 1), // blmpopGetKeys
	"bzmpop":            genericGetKeys(0, 2, 3, 1), // bzmpopGetKeys
}

// genericGetKeys is Redis's genericGetKeys for "[destkey] numkeys key [key ...]" commands. Note that it parses
// the count with C's atoi, which accepts what the key specs reject (" 2", "+2", "02", "2abc").
func genericGetKeys(storeKeyOfs, keyCountOfs, firstKeyOfs, keyStep int) getkeysProc {
	return func(args [][]byte, dst []int) []int {
		if keyCountOfs >= len(args) {
			return dst
		}
		num := atoi(args[keyCountOfs])
		if num < 1 || num > (len(args)-firstKeyOfs)/keyStep {
			return dst
		}
		for i := 0; i < num; i++ {
			dst = append(dst, firstKeyOfs+i*keyStep)
		}
		if storeKeyOfs != 0 {
			dst = append(dst, storeKeyOfs)
		}
		return dst
	}
}

func firstArgGetKeys(_ [][]byte, dst []int) []int { return append(dst, 1) }

// sortROGetKeys: SORT_RO's key is argument 1.
func sortROGetKeys(_ [][]byte, dst []int) []int { return append(dst, 1) }

// sortGetKeys: SORT's key, and the argument after the last STORE. LIMIT skips two arguments, GET and BY one;
// the argument after STORE is not skipped.
func sortGetKeys(args [][]byte, dst []int) []int {
	dst = append(dst, 1)
	store := 0
	for i := 2; i < len(args); i++ {
		a := args[i]
		switch {
		case cstrEqualFold(a, "limit"):
			i += 2
		case cstrEqualFold(a, "store") && i+1 < len(args):
			store = i + 1
		case cstrEqualFold(a, "get"), cstrEqualFold(a, "by"):
			i++
		}
	}
	if store != 0 {
		dst = append(dst, store)
	}
	return dst
}

// migrateGetKeys: argument 3, or, from argument 6 on, every argument after KEYS if argument 3 is empty
// (none if it is not: a syntax error for MIGRATE). AUTH skips one argument and AUTH2 two.
func migrateGetKeys(args [][]byte, dst []int) []int {
	first, num := 3, 1
	for i := 6; i < len(args); i++ {
		a := args[i]
		if cstrEqualFold(a, "keys") {
			if len(args[3]) > 0 {
				num = 0
			} else {
				first, num = i+1, len(args)-i-1
			}
			break
		}
		switch {
		case cstrEqualFold(a, "auth"):
			i++
		case cstrEqualFold(a, "auth2"):
			i += 2
		}
	}
	for i := 0; i < num; i++ {
		dst = append(dst, first+i)
	}
	return dst
}

// georadiusGetKeys: argument 1, and the argument after the last STORE or STOREDIST from argument 5 on.
func georadiusGetKeys(args [][]byte, dst []int) []int {
	dst = append(dst, 1)
	stored := 0
	for i := 5; i < len(args); i++ {
		if (cstrEqualFold(args[i], "store") || cstrEqualFold(args[i], "storedist")) && i+1 < len(args) {
			stored = i + 1
			i++
		}
	}
	if stored != 0 {
		dst = append(dst, stored)
	}
	return dst
}

// xreadGetKeys: after the options (BLOCK x, COUNT x, GROUP x y, NOACK), STREAMS and an even number of
// arguments, the first half of which are keys.
func xreadGetKeys(args [][]byte, dst []int) []int {
	streams := -1
loop:
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case cstrEqualFold(a, "block"), cstrEqualFold(a, "count"):
			i++
		case cstrEqualFold(a, "group"):
			i += 2
		case cstrEqualFold(a, "noack"):
		case cstrEqualFold(a, "streams"):
			streams = i
			break loop
		default:
			break loop
		}
	}
	if streams == -1 {
		return dst
	}
	num := len(args) - streams - 1
	if num == 0 || num%2 != 0 {
		return dst
	}
	for i := streams + 1; i < len(args)-num/2; i++ {
		dst = append(dst, i)
	}
	return dst
}

// cstrEqualFold is strcasecmp(arg, word) == 0 in the C locale: arg ends at its first NUL byte, and only
// ASCII letters fold.
func cstrEqualFold(arg []byte, word string) bool {
	if len(arg) < len(word) {
		return false
	}
	if len(arg) > len(word) && arg[len(word)] != 0 {
		return false
	}
	for i := 0; i < len(word); i++ {
		a, w := arg[i], word[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= w && w <= 'Z' {
			w += 'a' - 'A'
		}
		if a != w {
			return false
		}
	}
	return true
}

// atoi is glibc's atoi: (int)strtol(s, NULL, 10) on the argument as a C string. Leading white space and a
// sign are accepted, parsing stops at the first non-digit, strtol saturates at the int64 limits and the
// conversion to int keeps the low 32 bits.
func atoi(b []byte) int {
	b = cstr(b, len(b))
	i := 0
	for i < len(b) && (b[i] == ' ' || ('\t' <= b[i] && b[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var v uint64 // magnitude, saturated at 1<<63
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		if v <= (1<<63)/10 {
			v = v*10 + uint64(b[i]-'0')
		} else {
			v = 1 << 63
		}
		if v > 1<<63 {
			v = 1 << 63
		}
	}
	var l int64
	switch {
	case neg:
		l = -int64(v) // 1<<63 becomes math.MinInt64, strtol's LONG_MIN
	case v >= 1<<63:
		l = 1<<63 - 1
	default:
		l = int64(v)
	}
	return int(int32(l))
}
