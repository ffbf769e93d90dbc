package command

// KeyRef is one key of a request: its position in the arguments and the key spec flags Redis gives it.
type KeyRef struct {
	Pos   int
	Flags KeySpecFlag
}

// KeysWithFlags appends to dst the keys of the request with their flags, as Redis 7.0's
// getKeysFromCommandWithSpecs(GET_KEYSPEC_DEFAULT) finds them for the ACL checks and COMMAND
// GETKEYSANDFLAGS: the positions are those of KeyIndexes, in the same order. A key found by the key spec
// walk has the flags of its spec; a key found by a getkeys procedure has the flags that procedure sets in
// db.c: SORT's key RO|access and its STORE key OW|update, SORT_RO's RO|access, MIGRATE's keys
// RW|access|delete, SET's RW|access|update with GET and OW|update without, BITFIELD's RO|access when it
// only reads and RW|access|update otherwise, and none (0) for the keys of genericGetKeys (EVAL, FCALL,
// ZUNIONSTORE, LMPOP... when their key count does not parse as the spec wants it), GEORADIUS and XREAD.
// c must be the command Lookup returned with LookupOK for args. It does not allocate when dst has room.
func KeysWithFlags(c *Command, args [][]byte, dst []KeyRef) []KeyRef {
	base := len(dst)
	if c.useSpecs {
		var ok bool
		if dst, ok = specKeyRefs(c, args, dst); ok {
			return dst
		}
		dst = dst[:base]
	}
	if c.getkeys == nil {
		return dst
	}
	p := &refProcs[c.Index]
	switch p.kind {
	case procGeneric:
		return genericKeyRefs(p, args, dst)
	case procFirst:
		return append(dst, KeyRef{1, 0})
	case procSet:
		return setKeyRefs(args, dst)
	case procBitfield:
		return bitfieldKeyRefs(args, dst)
	case procSortRO:
		return append(dst, KeyRef{1, KeyRO | KeyAccess})
	case procSort:
		return sortKeyRefs(args, dst)
	case procMigrate:
		return migrateKeyRefs(args, dst)
	case procGeoradius:
		return georadiusKeyRefs(args, dst)
	case procXread:
		return xreadKeyRefs(args, dst)
	}
	panic("command: no key procedure for " + c.Name)
}

type procKind uint8

const (
	procNone procKind = iota
	procGeneric
	procFirst
	procSet
	procBitfield
	procSortRO
	procSort
	procMigrate
	procGeoradius
	procXread
)

// refProc is how KeysWithFlags transcribes the command's getkeys procedure: a direct call per kind rather
// than a function value, so that dst does not escape.
type refProc struct {
	kind                         procKind
	store, count, first, keyStep int // procGeneric: genericGetKeys's arguments
}

var refProcs = func() []refProc {
	byName := map[string]refProc{
		"sort":              {kind: procSort},
		"sort_ro":           {kind: procSortRO},
		"migrate":           {kind: procMigrate},
		"georadius":         {kind: procGeoradius},
		"georadiusbymember": {kind: procGeoradius},
		"xread":             {kind: procXread},
		"xreadgroup":        {kind: procXread},
		"set":               {kind: procSet},
		"bitfield":          {kind: procBitfield},
		"eval":              {procGeneric, 0, 2, 3, 1},
		"evalsha":           {procGeneric, 0, 2, 3, 1},
		"eval_ro":           {procGeneric, 0, 2, 3, 1},
		"evalsha_ro":        {procGeneric, 0, 2, 3, 1},
		"fcall":             {procGeneric, 0, 2, 3, 1},
		"fcall_ro":          {procGeneric, 0, 2, 3, 1},
		"zunionstore":       {procGeneric, 1, 2, 3, 1},
		"zinterstore":       {procGeneric, 1, 2, 3, 1},
		"zdiffstore":        {procGeneric, 1, 2, 3, 1},
		"zunion":            {procGeneric, 0, 1, 2, 1},
		"zinter":            {procGeneric, 0, 1, 2, 1},
		"zdiff":             {procGeneric, 0, 1, 2, 1},
		"zintercard":        {procGeneric, 0, 1, 2, 1},
		"sintercard":        {procGeneric, 0, 1, 2, 1},
		"lmpop":             {procGeneric, 0, 1, 2, 1},
		"zmpop":             {procGeneric, 0, 1, 2, 1},
		"blmpop":            {procGeneric, 0, 2, 3, 1},
		"bzmpop":            {procGeneric, 0, 2, 3, 1},
	}
	procs := make([]refProc, len(commands))
	for i := range commands {
		procs[i] = byName[commands[i].Name]
		delete(byName, commands[i].Name)
	}
	if len(byName) != 0 {
		panic("command: keyflags.go: key procedures for commands not in the table")
	}
	return procs
}()

// specKeyRefs is specKeys with the flags of each key's spec; ok false when the walk fails (specFailed or
// specZeroCount).
func specKeyRefs(c *Command, args [][]byte, dst []KeyRef) ([]KeyRef, bool) {
	dst, res := walkSpecs(c, args, dst, func(pos int, flags KeySpecFlag) KeyRef { return KeyRef{pos, flags} })
	return dst, res == specOK
}

// genericKeyRefs is genericGetKeys (see genericGetKeys in keys.go): the keys have no flags.
func genericKeyRefs(p *refProc, args [][]byte, dst []KeyRef) []KeyRef {
	if p.count >= len(args) {
		return dst
	}
	num := atoi(args[p.count])
	if num < 1 || num > (len(args)-p.first)/p.keyStep {
		return dst
	}
	for i := 0; i < num; i++ {
		dst = append(dst, KeyRef{p.first + i*p.keyStep, 0})
	}
	if p.store != 0 {
		dst = append(dst, KeyRef{p.store, 0})
	}
	return dst
}

// setKeyRefs is setGetKeys: RW|access|update if an argument from the third on is GET (as a C string, in
// any case), OW|update otherwise.
func setKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
	for i := 3; i < len(args); i++ {
		if cstrEqualFold(args[i], "get") {
			return append(dst, KeyRef{1, KeyRW | KeyAccess | KeyUpdate})
		}
	}
	return append(dst, KeyRef{1, KeyOW | KeyUpdate})
}

// bitfieldKeyRefs is bitfieldGetKeys: read-only when every operation is a complete GET or OVERFLOW.
func bitfieldKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
	readonly := true
	for i := 2; i < len(args); i++ {
		rem := len(args) - i - 1
		a := args[i]
		switch {
		case cstrEqualFold(a, "get") && rem >= 2:
			i += 2
			continue
		case (cstrEqualFold(a, "set") || cstrEqualFold(a, "incrby")) && rem >= 3:
			readonly = false
		case cstrEqualFold(a, "overflow") && rem >= 1:
			i++
			continue
		default:
			readonly = false
		}
		break
	}
	if readonly {
		return append(dst, KeyRef{1, KeyRO | KeyAccess})
	}
	return append(dst, KeyRef{1, KeyRW | KeyAccess | KeyUpdate})
}

// sortKeyRefs is sortGetKeys (sortGetKeys in keys.go) with its flags.
func sortKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
	dst = append(dst, KeyRef{1, KeyRO | KeyAccess})
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
		dst = append(dst, KeyRef{store, KeyOW | KeyUpdate})
	}
	return dst
}

// migrateKeyRefs is migrateGetKeys (migrateGetKeys in keys.go) with its flags.
func migrateKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
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
		dst = append(dst, KeyRef{first + i, KeyRW | KeyAccess | KeyDelete})
	}
	return dst
}

// georadiusKeyRefs is georadiusGetKeys: no flags.
func georadiusKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
	dst = append(dst, KeyRef{1, 0})
	stored := 0
	for i := 5; i < len(args); i++ {
		if (cstrEqualFold(args[i], "store") || cstrEqualFold(args[i], "storedist")) && i+1 < len(args) {
			stored = i + 1
			i++
		}
	}
	if stored != 0 {
		dst = append(dst, KeyRef{stored, 0})
	}
	return dst
}

// xreadKeyRefs is xreadGetKeys: no flags.
func xreadKeyRefs(args [][]byte, dst []KeyRef) []KeyRef {
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
		dst = append(dst, KeyRef{i, 0})
	}
	return dst
}
