package acl

import "github.com/slotproxy/slotproxy/proxy/command"

// Check is Redis's ACLCheckAllUserCommandPerm: whether the user may run cmd with args (args[0] the command
// name), and if not why and at which argument.
//
// A selector allows the request if it allows the command (allcommands, the command's bit, or an allowed
// first argument; no_auth commands always), every key (KeysWithFlags, each against the patterns whose
// permissions cover what the command does with it: read for "access", write for "insert", "delete" and
// "update"), and every channel (PUBLISH and SPUBLISH: argument 1; SUBSCRIBE and SSUBSCRIBE: every argument;
// PSUBSCRIBE: every argument, compared literally with the channel patterns; the UNSUBSCRIBE commands are
// not checked). The request is allowed if a selector allows it. If none does, the denial is the greatest
// of the selectors' (command < key < channel) and, among equal ones, the one at the last argument; the
// position is 0 for DenyCommand. cmd must be the command Lookup returned with LookupOK for args. Check does
// not allocate for requests with up to 16 keys.
func (u *User) Check(cmd *command.Command, args [][]byte) (Denial, int) {
	var buf [16]command.KeyRef
	var keys []command.KeyRef
	haveKeys := false
	relevant, last := DenyCommand, 0
	for _, s := range u.selectors {
		d, pos := s.checkCommand(cmd, args)
		if d == Allowed && !s.allKeys {
			if !haveKeys {
				keys = command.KeysWithFlags(cmd, args, buf[:0])
				haveKeys = true
			}
			d, pos = s.checkKeys(args, keys)
		}
		if d == Allowed && !s.allChannels {
			d, pos = s.checkChannels(cmd, args)
		}
		if d == Allowed {
			return Allowed, 0
		}
		if d > relevant || (d == relevant && pos > last) {
			relevant, last = d, pos
		}
	}
	return relevant, last
}

// checkCommand is the command part of ACLSelectorCheckCmd.
func (s *selector) checkCommand(cmd *command.Command, args [][]byte) (Denial, int) {
	if s.allCommands || cmd.Flags&command.NoAuth != 0 || s.bit(cmd) {
		return Allowed, 0
	}
	if len(args) < 2 {
		return DenyCommand, 0
	}
	fas := s.firstArgsOf(cmd)
	if fas == nil {
		return DenyCommand, 0
	}
	idx := 1
	if cmd.Parent != nil {
		idx = 2
	}
	if idx >= len(args) {
		return DenyCommand, 0
	}
	for _, fa := range fas {
		if cstrEqualFold(args[idx], fa) {
			return Allowed, 0
		}
	}
	return DenyCommand, 0
}

// checkKeys is the key part of ACLSelectorCheckCmd: ACLSelectorCheckKey for every key, in order.
func (s *selector) checkKeys(args [][]byte, keys []command.KeyRef) (Denial, int) {
	for _, k := range keys {
		if !s.keyAllowed(args[k.Pos], k.Flags) {
			return DenyKey, k.Pos
		}
	}
	return Allowed, 0
}

// keyAllowed is ACLSelectorCheckKey.
func (s *selector) keyAllowed(key []byte, flags command.KeySpecFlag) bool {
	if s.allKeys {
		return true
	}
	need := uint8(0)
	if flags&command.KeyAccess != 0 {
		need |= permRead
	}
	if flags&(command.KeyInsert|command.KeyDelete|command.KeyUpdate) != 0 {
		need |= permWrite
	}
	for i := range s.patterns {
		p := &s.patterns[i]
		if p.perm&need != need {
			continue
		}
		if matchBytes(p.pattern, key) {
			return true
		}
	}
	return false
}

// Channel arguments of the commands of getChannelsFromCommand that publish or subscribe.
const (
	chanNone    uint8 = iota
	chanFirst         // PUBLISH, SPUBLISH: argument 1
	chanAll           // SUBSCRIBE, SSUBSCRIBE: every argument
	chanPattern       // PSUBSCRIBE: every argument, a pattern
)

var chanKinds = func() []uint8 {
	k := make([]uint8, command.Count())
	for name, kind := range map[string]uint8{"publish": chanFirst, "spublish": chanFirst, "subscribe": chanAll,
		"ssubscribe": chanAll, "psubscribe": chanPattern} {
		c, _ := command.Lookup([][]byte{[]byte(name)})
		if c == nil {
			panic("acl: no command " + name)
		}
		k[c.Index] = kind
	}
	return k
}()

// checkChannels is the channel part of ACLSelectorCheckCmd.
func (s *selector) checkChannels(cmd *command.Command, args [][]byte) (Denial, int) {
	kind := chanKinds[cmd.Index]
	if kind == chanNone || s.allChannels {
		return Allowed, 0
	}
	start, stop := 1, len(args)
	if kind == chanFirst {
		stop = min(2, len(args))
	}
	for i := start; i < stop; i++ {
		if !s.channelAllowed(args[i], kind == chanPattern) {
			return DenyChannel, i
		}
	}
	return Allowed, 0
}

// channelAllowed is ACLCheckChannelAgainstList: a channel matches a pattern as a glob; a PSUBSCRIBE pattern
// must equal it (strcmp: the argument up to its first NUL byte).
func (s *selector) channelAllowed(ch []byte, isPattern bool) bool {
	for _, p := range s.channels {
		if isPattern {
			if cstrEqual(ch, p) {
				return true
			}
		} else if matchBytes(p, ch) {
			return true
		}
	}
	return false
}

// cstrEqual is strcmp(arg, s) == 0, arg a C string (s has no NUL byte).
func cstrEqual(arg []byte, s string) bool {
	n := len(arg)
	for i, c := range arg {
		if c == 0 {
			n = i
			break
		}
	}
	return n == len(s) && string(arg[:n]) == s
}

// cstrEqualFold is strcasecmp(arg, s) == 0 on C strings, folding ASCII letters only (s has no NUL byte).
func cstrEqualFold(arg []byte, s string) bool {
	n := len(arg)
	for i, c := range arg {
		if c == 0 {
			n = i
			break
		}
	}
	if n != len(s) {
		return false
	}
	for i := 0; i < n; i++ {
		a, b := arg[i], s[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// asciiEqualFold is strcasecmp(a, b) == 0 in the C locale on strings without NUL bytes: only ASCII letters
// fold (strings.EqualFold folds Unicode too: "ſ" and "s").
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
