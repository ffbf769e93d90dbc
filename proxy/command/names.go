package command

// nameTable finds a command by name, folding ASCII case as Redis's command dictionaries do (strcasecmp),
// without copying or allocating. It is an open-addressing hash table built once at init; a Go map would need
// the name lowered into a buffer first and costs several times more per lookup (BenchmarkLookupGet).
type nameTable struct {
	keys  []string   // lower-case names; "" marks an empty slot
	cmds  []*Command // the command of keys[i]
	mask  uint32     // len(keys)-1; len(keys) is a power of two, at least twice the number of names
	probe int        // the longest probe sequence of any name: lookups of unknown names stop there
}

func newNameTable(names []string, cmds []*Command) *nameTable {
	size := 4
	for size < 2*len(names) {
		size *= 2
	}
	t := &nameTable{keys: make([]string, size), cmds: make([]*Command, size), mask: uint32(size - 1)}
	for i, name := range names {
		if name == "" {
			panic("command: empty command name")
		}
		h, _ := foldHash([]byte(name))
		for n := 1; ; n++ {
			slot := h & t.mask
			if t.keys[slot] == "" {
				t.keys[slot], t.cmds[slot] = name, cmds[i]
				t.probe = max(t.probe, n)
				break
			}
			if t.keys[slot] == name {
				panic("command: duplicate command name " + name)
			}
			h++
		}
	}
	return t
}

// get returns the command named b in any ASCII case, or nil.
func (t *nameTable) get(b []byte) *Command {
	h, ok := foldHash(b)
	if !ok {
		return nil
	}
	for range t.probe {
		slot := h & t.mask
		k := t.keys[slot]
		if k == "" {
			return nil
		}
		if len(k) == len(b) && foldEqual(b, k) {
			return t.cmds[slot]
		}
		h++
	}
	return nil
}

// foldHash is FNV-1a over b in ASCII lower case. ok is false when b is longer than every name.
func foldHash(b []byte) (h uint32, ok bool) {
	if len(b) > maxNameLen {
		return 0, false
	}
	h = 2166136261
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint32(c)
		h *= 16777619
	}
	return h, true
}

// foldEqual tells whether b equals the lower-case name k when ASCII letters of b are folded; len(b) == len(k).
func foldEqual(b []byte, k string) bool {
	for i := range len(k) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != k[i] {
			return false
		}
	}
	return true
}
