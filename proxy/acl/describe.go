package acl

import (
	"strings"

	"github.com/slotproxy/slotproxy/proxy/command"
)

// describe is "user <name> " and ACLDescribeUser.
func (u *User) describe() string {
	var b strings.Builder
	b.WriteString("user ")
	b.WriteString(u.name)
	b.WriteByte(' ')
	for i, n := range userFlagNames {
		if u.flags&(1<<i) != 0 {
			b.WriteString(n)
			b.WriteByte(' ')
		}
	}
	for _, p := range u.passwords {
		b.WriteByte('#')
		b.WriteString(p)
		b.WriteByte(' ')
	}
	for _, s := range u.selectors {
		if s.root {
			s.describe(&b)
		} else {
			b.WriteString(" (")
			s.describe(&b)
			b.WriteByte(')')
		}
	}
	return b.String()
}

// describe is ACLDescribeSelector.
func (s *selector) describe(b *strings.Builder) {
	if s.allKeys {
		b.WriteString("~* ")
	} else {
		for _, p := range s.patterns {
			p.write(b)
			b.WriteByte(' ')
		}
	}
	if s.allChannels {
		b.WriteString("&* ")
	} else {
		b.WriteString("resetchannels ")
		for _, c := range s.channels {
			b.WriteByte('&')
			b.WriteString(c)
			b.WriteByte(' ')
		}
	}
	b.WriteString(s.commandRules())
}

// write is sdsCatPatternString.
func (p keyPattern) write(b *strings.Builder) {
	switch p.perm {
	case permAll:
		b.WriteString("~")
	case permRead:
		b.WriteString("%R~")
	case permWrite:
		b.WriteString("%W~")
	}
	b.WriteString(p.pattern)
}

// info is aclAddReplySelectorDescription.
func (s *selector) info() SelectorInfo {
	in := SelectorInfo{Commands: s.commandRules()}
	if s.allKeys {
		in.Keys = "~*"
	} else {
		var b strings.Builder
		for i, p := range s.patterns {
			if i > 0 {
				b.WriteByte(' ')
			}
			p.write(&b)
		}
		in.Keys = b.String()
	}
	if s.allChannels {
		in.Channels = "&*"
	} else {
		var b strings.Builder
		for i, c := range s.channels {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteByte('&')
			b.WriteString(c)
		}
		in.Channels = b.String()
	}
	return in
}

// countCategory is ACLCountCategoryBitsForSelector: how many commands of the category the selector allows
// and denies.
func (s *selector) countCategory(cat command.Category) (on, off int) {
	for _, c := range command.All() {
		if c.Categories&cat != 0 {
			if s.bit(c) {
				on++
			} else {
				off++
			}
		}
	}
	return on, off
}

// commandRules is ACLDescribeSelectorCommandRules: +@all or -@all, the categories that fit best, then the
// single commands and first arguments that make the bits exact. The single commands come in the order of
// command.All(); Redis's follow its command dictionary.
func (s *selector) commandRules() string {
	var b strings.Builder
	additive := !s.future
	fake := newSelector(false)
	if additive {
		b.WriteString("-@all ")
	} else {
		b.WriteString("+@all ")
		fake.setAll(true)
	}
	temp := newSelector(false)
	copy(temp.allowed, s.allowed)
	applied := make([]bool, len(catBits))
	for {
		best, mindiff, maxsame := -1, int(^uint(0)>>1), 0
		for j, cat := range catBits {
			if applied[j] {
				continue
			}
			on, off := temp.countCategory(cat)
			diff, same := off, on
			if !additive {
				diff, same = on, off
			}
			if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
				best, mindiff, maxsame = j, diff, same
			}
		}
		if best == -1 {
			break
		}
		fake.setCategory(catBits[best], additive)
		temp.setCategory(catBits[best], !additive)
		if additive {
			b.WriteString("+@")
		} else {
			b.WriteString("-@")
		}
		b.WriteString(catNames[best])
		b.WriteByte(' ')
		applied[best] = true
	}
	for _, c := range command.All() {
		userbit, fakebit := s.bit(c), fake.bit(c)
		if userbit != fakebit {
			if userbit {
				b.WriteByte('+')
			} else {
				b.WriteByte('-')
			}
			b.WriteString(c.Name)
			b.WriteByte(' ')
			fake.changePerm(c, userbit)
		}
		if !userbit {
			for _, a := range s.firstArgsOf(c) {
				b.WriteByte('+')
				b.WriteString(c.Name)
				b.WriteByte('|')
				b.WriteString(a)
				b.WriteByte(' ')
			}
		}
	}
	r := b.String()
	return r[:len(r)-1]
}
