package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
)

// errno is the errno ACLSetUser and ACLSetSelector leave on failure.
type errno uint8

const (
	errOK      errno = iota
	errINVAL         // syntax error
	errNOENT         // unknown command or category
	errEXIST         // key pattern after allkeys
	errISDIR         // channel pattern after allchannels
	errNODEV         // removing a password the user does not have
	errBADMSG        // bad password hash
	errCHILD         // first-arg rule on a subcommand
	errUnknown       // any other errno: "Wrong format"
)

// String is ACLSetUserStringError.
func (e errno) String() string {
	switch e {
	case errNOENT:
		return "Unknown command or category name in ACL"
	case errINVAL:
		return "Syntax error"
	case errEXIST:
		return "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
	case errISDIR:
		return "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
	case errNODEV:
		return "The password you are trying to remove from the user does not exist"
	case errBADMSG:
		return "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
	case errCHILD:
		return "Allowing first-arg of a subcommand is not supported"
	}
	return "Wrong format"
}

// Key pattern permissions (ACL_READ_PERMISSION, ACL_WRITE_PERMISSION).
const (
	permRead  uint8 = 1 << 0
	permWrite uint8 = 1 << 1
	permAll         = permRead | permWrite
)

type keyPattern struct {
	pattern string
	perm    uint8
}

// selector is Redis's aclSelector.
type selector struct {
	root        bool
	allKeys     bool // SELECTOR_FLAG_ALLKEYS
	allChannels bool // SELECTOR_FLAG_ALLCHANNELS
	allCommands bool // SELECTOR_FLAG_ALLCOMMANDS
	future      bool // the reserved command bit that only +@all sets ("future commands")

	allowed   []uint64         // command bits, by command.Command.Index
	firstArgs map[int][]string // allowed first arguments, by command Index; nil if none
	patterns  []keyPattern
	channels  []string
}

var nWords = (command.Count() + 63) / 64

func newSelector(root bool) *selector {
	return &selector{root: root, allowed: make([]uint64, nWords)}
}

func (s *selector) clone() *selector {
	c := *s
	c.allowed = slices.Clone(s.allowed)
	if s.firstArgs != nil {
		c.firstArgs = make(map[int][]string, len(s.firstArgs))
		for k, v := range s.firstArgs {
			c.firstArgs[k] = slices.Clone(v)
		}
	}
	c.patterns = slices.Clone(s.patterns)
	c.channels = slices.Clone(s.channels)
	return &c
}

func (s *selector) bit(c *command.Command) bool { return s.allowed[c.Index/64]&(1<<(c.Index%64)) != 0 }

// setBit is ACLSetSelectorCommandBit: clearing a bit clears the allcommands flag.
func (s *selector) setBit(c *command.Command, v bool) {
	if v {
		s.allowed[c.Index/64] |= 1 << (c.Index % 64)
	} else {
		s.allowed[c.Index/64] &^= 1 << (c.Index % 64)
		s.allCommands = false
	}
}

// changePerm is ACLChangeSelectorPerm: the command, and a container's subcommands.
func (s *selector) changePerm(c *command.Command, allow bool) {
	s.setBit(c, allow)
	if s.firstArgs != nil {
		delete(s.firstArgs, c.Index)
	}
	for _, sub := range c.Subcommands {
		s.setBit(sub, allow)
	}
}

// setCategory is ACLSetSelectorCommandBitsForCategory.
func (s *selector) setCategory(cat command.Category, allow bool) {
	for _, c := range command.All() {
		if c.Categories&cat != 0 {
			s.changePerm(c, allow)
		}
	}
}

func (s *selector) setAll(allow bool) {
	w := uint64(0)
	if allow {
		w = ^uint64(0)
	}
	for i := range s.allowed {
		s.allowed[i] = w
	}
	s.allCommands, s.future = allow, allow
	s.firstArgs = nil
}

// allBits tells whether every command's bit is set.
func (s *selector) allBits() bool {
	for _, c := range command.All() {
		if !s.bit(c) {
			return false
		}
	}
	return true
}

func (s *selector) unrestricted() bool {
	return (s.allCommands || s.allBits()) && s.allKeys && s.allChannels
}

// lookupCommand is ACLLookupCommand (lookupCommandBySdsLogic on the original command table, strict): "name"
// or "container|sub", the name a C string, in any case.
func lookupCommand(name string) *command.Command {
	if name == "" {
		return nil // sdssplitlen of an empty string fails
	}
	parts := strings.Split(name, "|")
	if len(parts) > 2 {
		return nil
	}
	args := make([][]byte, len(parts))
	for i, p := range parts {
		args[i] = []byte(p)
	}
	c, st := command.Lookup(args)
	if c == nil || st == command.UnknownSubcommand {
		return nil
	}
	if len(parts) == 1 {
		return c
	}
	if c.Parent == nil {
		return nil // a command without subcommands, with argc 2 in strict mode
	}
	return c
}

// set is ACLSetUser.
func (u *User) set(op string) errno {
	if op == "" {
		return errOK
	}
	cop := cstring(op)
	switch {
	case asciiEqualFold(cop, "on"):
		u.flags = u.flags&^flagOff | flagOn
	case asciiEqualFold(cop, "off"):
		u.flags = u.flags&^flagOn | flagOff
	case asciiEqualFold(cop, "skip-sanitize-payload"):
		u.flags = u.flags&^flagSanitize | flagSkipSanitize
	case asciiEqualFold(cop, "sanitize-payload"):
		u.flags = u.flags&^flagSkipSanitize | flagSanitize
	case asciiEqualFold(cop, "nopass"):
		u.flags |= flagNoPass
		u.passwords = nil
	case asciiEqualFold(cop, "resetpass"):
		u.flags &^= flagNoPass
		u.passwords = nil
	case op[0] == '>' || op[0] == '#':
		var h string
		if op[0] == '>' {
			h = hashPassword(op[1:])
		} else {
			if !validHash(op[1:]) {
				return errBADMSG
			}
			h = op[1:]
		}
		if !slices.Contains(u.passwords, h) {
			u.passwords = append(u.passwords, h)
		}
		u.flags &^= flagNoPass
	case op[0] == '<' || op[0] == '!':
		var h string
		if op[0] == '<' {
			h = hashPassword(op[1:])
		} else {
			if !validHash(op[1:]) {
				return errBADMSG
			}
			h = op[1:]
		}
		i := slices.Index(u.passwords, h)
		if i < 0 {
			return errNODEV
		}
		u.passwords = slices.Delete(slices.Clone(u.passwords), i, i+1)
	case op[0] == '(' && op[len(op)-1] == ')':
		s := newSelector(false)
		// sdssplitargs of what is inside the parentheses; on unbalanced quotes it returns no words, and the
		// selector stays empty.
		for _, w := range splitArgs(op[1 : len(op)-1]) {
			if e := s.set(w); e != errOK {
				return e
			}
		}
		u.selectors = append(u.selectors, s)
	case asciiEqualFold(cop, "clearselectors"):
		u.selectors = u.selectors[:1]
	case asciiEqualFold(cop, "reset"):
		u.set("resetpass")
		u.set("resetkeys")
		u.set("resetchannels")
		u.set("off")
		u.set("sanitize-payload")
		u.set("clearselectors")
		u.set("-@all")
	default:
		return u.selectors[0].set(op)
	}
	return errOK
}

// set is ACLSetSelector.
func (s *selector) set(op string) errno {
	cop := cstring(op)
	at := func(i int) byte { // op[i] of the C string, its terminating NUL past the end
		if i < len(op) {
			return op[i]
		}
		return 0
	}
	switch {
	case asciiEqualFold(cop, "allkeys") || asciiEqualFold(cop, "~*"):
		s.allKeys = true
		s.patterns = nil
	case asciiEqualFold(cop, "resetkeys"):
		s.allKeys = false
		s.patterns = nil
	case asciiEqualFold(cop, "allchannels") || asciiEqualFold(cop, "&*"):
		s.allChannels = true
		s.channels = nil
	case asciiEqualFold(cop, "resetchannels"):
		s.allChannels = false
		s.channels = nil
	case asciiEqualFold(cop, "allcommands") || asciiEqualFold(cop, "+@all"):
		s.setAll(true)
	case asciiEqualFold(cop, "nocommands") || asciiEqualFold(cop, "-@all"):
		s.setAll(false)
	case at(0) == '~' || at(0) == '%':
		if s.allKeys {
			return errEXIST
		}
		perm := uint8(0)
		offset := 1
		if op[0] == '%' {
			for ; offset < len(op); offset++ {
				c := op[offset]
				if (c == 'R' || c == 'r') && perm&permRead == 0 {
					perm |= permRead
				} else if (c == 'W' || c == 'w') && perm&permWrite == 0 {
					perm |= permWrite
				} else if c == '~' && perm != 0 {
					offset++
					break
				} else {
					return errINVAL
				}
			}
			if perm == 0 {
				return errINVAL // "%" alone (CVE-2024-31227 fix as the reference server has it)
			}
		} else {
			perm = permAll
		}
		pat := op[offset:]
		if hasSpaces(pat) {
			return errINVAL
		}
		found := false
		for i := range s.patterns {
			if s.patterns[i].pattern == pat {
				s.patterns[i].perm |= perm
				found = true
				break
			}
		}
		if !found {
			s.patterns = append(s.patterns, keyPattern{pat, perm})
		}
		s.allKeys = false
	case at(0) == '&':
		if s.allChannels {
			return errISDIR
		}
		pat := op[1:]
		if hasSpaces(pat) {
			return errINVAL
		}
		if !slices.Contains(s.channels, pat) {
			s.channels = append(s.channels, pat)
		}
		s.allChannels = false
	case at(0) == '+' && at(1) != '@':
		i := strings.LastIndexByte(cop, '|')
		if i < 0 {
			c := lookupCommand(cop[1:])
			if c == nil {
				return errNOENT
			}
			s.changePerm(c, true)
			break
		}
		c := lookupCommand(cop[1:i])
		sub := cop[i+1:]
		if c == nil {
			return errNOENT
		}
		if c.Parent != nil {
			return errCHILD
		}
		if sub == "" {
			return errINVAL
		}
		if c.Subcommands != nil {
			c = lookupCommand(cop[1:])
			if c == nil {
				return errNOENT
			}
			s.changePerm(c, true)
			break
		}
		s.addFirstArg(c, sub)
	case at(0) == '-' && at(1) != '@':
		c := lookupCommand(cop[1:])
		if c == nil {
			return errNOENT
		}
		s.changePerm(c, false)
	case (at(0) == '+' || at(0) == '-') && at(1) == '@':
		cat, ok := categoryByName(cop[2:])
		if !ok {
			return errNOENT
		}
		s.setCategory(cat, op[0] == '+')
	default:
		return errINVAL
	}
	return errOK
}

// addFirstArg is ACLAddAllowedFirstArg: kept once, compared case-insensitively.
func (s *selector) addFirstArg(c *command.Command, arg string) {
	if s.firstArgs == nil {
		s.firstArgs = map[int][]string{}
	}
	for _, a := range s.firstArgs[c.Index] {
		if asciiEqualFold(a, arg) {
			return
		}
	}
	s.firstArgs[c.Index] = append(s.firstArgs[c.Index], arg)
}

// firstArgsOf are the allowed first arguments of c, nil if none.
func (s *selector) firstArgsOf(c *command.Command) []string {
	if s.firstArgs == nil {
		return nil
	}
	return s.firstArgs[c.Index]
}

func hashPassword(p string) string {
	sum := sha256.Sum256([]byte(p))
	return hex.EncodeToString(sum[:])
}

// validHash is ACLCheckPasswordHash.
func validHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < 'a' || c > 'f') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// splitArgs is sdssplitargs on s as a C string; nil on unbalanced quotes or a closing quote followed by
// something other than a space.
func splitArgs(s string) []string {
	args, ok := resp.SplitArgs([]byte(cstring(s)))
	if !ok {
		return nil
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}
