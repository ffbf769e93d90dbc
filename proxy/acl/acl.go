// Package acl is Redis 7.0's ACL model, enforced by the proxy for its own clients: users written in Redis's
// rule syntax (aclfile lines), password checks, and the command, key and channel permission checks Redis
// runs before a command (acl.c). The cluster's own users are not involved.
//
// The reference is Redis 7.0.15 as Debian 12 ships it (7.0.15-1~deb12u10), which carries two security fixes
// of Redis 7.2.6 that change what this package does: a "%" key rule must name R or W (CVE-2024-31227;
// "%~k" is a syntax error), and glob matching gives up (no match) beyond 1000 nested '*' (CVE-2024-31228).
//
// Where Redis's output follows the order of its command dictionary, which is a hash table with a seed
// chosen at random at each start (the single-command rules of ACL LIST and ACL GETUSER after the category
// rules, and ACL CAT <category>), this package uses the order of command.All(): commands by name, each
// container followed by its subcommands. Two runs of one redis-server binary differ in that order too.
package acl

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/slotproxy/slotproxy/proxy/command"
)

// Users is the set of users of one configuration; immutable once built.
type Users struct {
	byName map[string]*User
	names  []string
}

// BuildError is an error of Build: the line (1-based) and what is wrong with it.
type BuildError struct {
	Line int
	Msg  string // "Error in user declaration '<rule>': Syntax error", ...
}

func (e *BuildError) Error() string { return "line " + strconv.Itoa(e.Line) + ": " + e.Msg }

// Build makes the users of aclfile-style lines ("user <name> <rule> ..."). requirepass, if not empty, is
// the default user's password, as Redis's requirepass sets it; a "user default" line takes precedence.
// Without a default line, default is Redis's: on, nopass, ~*, &*, +@all.
//
// Lines are read as Redis's ACLLoadFromFile reads an aclfile: trimmed of spaces, tabs, CR and LF, split on
// single spaces (so that two spaces make an empty rule, which does nothing), selector rules spread over
// several words joined again ("(~a +get)"), each rule trimmed of tabs, CR and LF and applied in order to a
// user created as ACLCreateUser does (off, no passwords, no keys, no channels, no commands). Empty lines
// and lines starting with '#' are skipped (Redis takes the latter for errors). A user may be defined once.
// The error, a *BuildError, names the line and, for a rule Redis refuses, the rule and Redis's reason
// (ACLSetUserStringError): "line 3: Error in user declaration '+nosuch': Unknown command or category name
// in ACL". A refused "<password" rule is shown as '<...'.
func Build(lines []string, requirepass string) (*Users, error) {
	us := &Users{byName: map[string]*User{}}
	for i, line := range lines {
		n := i + 1
		line = sdstrim(line, " \t\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		argv := strings.Split(line, " ")
		if argv[0] != "user" || len(argv) < 2 {
			return nil, &BuildError{n, "should start with user keyword followed by the username"}
		}
		name := argv[1]
		if hasSpaces(name) {
			return nil, &BuildError{n, "username '" + name + "' contains invalid characters"}
		}
		if us.byName[name] != nil {
			return nil, &BuildError{n, "Duplicate user '" + name + "' found"}
		}
		rules, bad := mergeSelectorArgs(argv[2:])
		if bad >= 0 {
			return nil, &BuildError{n, "Unmatched parenthesis in acl selector starting at '" + cstring(argv[2+bad]) + "'"}
		}
		u := newUser(name)
		for _, r := range rules {
			r = sdstrim(r, "\t\r\n")
			if e := u.set(r); e != errOK {
				shown := cstring(r)
				if shown != "" && (shown[0] == '<' || shown[0] == '>') {
					shown = shown[:1] + "..." // a cleartext password: not for the logs
				}
				return nil, &BuildError{n, "Error in user declaration '" + shown + "': " + e.String()}
			}
		}
		us.byName[name] = u
	}
	if us.byName["default"] == nil {
		d := newDefaultUser()
		if requirepass != "" {
			d.set("resetpass")
			d.set(">" + requirepass)
		}
		us.byName["default"] = d
	}
	for name, u := range us.byName {
		u.finish()
		us.names = append(us.names, name)
	}
	slices.Sort(us.names)
	return us, nil
}

// Get is the user named name, nil if there is none.
func (us *Users) Get(name string) *User { return us.byName[name] }

// Default is the default user.
func (us *Users) Default() *User { return us.byName["default"] }

// Names are the user names, sorted as ACL USERS lists them.
func (us *Users) Names() []string { return slices.Clone(us.names) }

// List is ACL LIST: every user's Describe line, in the order of Names.
func (us *Users) List() []string {
	out := make([]string, len(us.names))
	for i, n := range us.names {
		out[i] = us.byName[n].descr
	}
	return out
}

// User is one user. A *User returned by this package is never modified.
type User struct {
	name      string
	flags     userFlag
	passwords []string    // SHA-256 hex, in the order they were added
	selectors []*selector // the root selector first

	descr        string // Describe, computed by finish
	unrestricted bool
}

type userFlag uint8

// The user flags, in the order ACL LIST and ACL GETUSER show them (ACLUserFlags).
const (
	flagOn userFlag = 1 << iota
	flagOff
	flagNoPass
	flagSkipSanitize
	flagSanitize
)

var userFlagNames = [...]string{"on", "off", "nopass", "skip-sanitize-payload", "sanitize-payload"}

// newUser is ACLCreateUser: off, and a root selector without permissions (acl-pubsub-default is
// resetchannels in 7.0).
func newUser(name string) *User {
	return &User{name: name, flags: flagOff, selectors: []*selector{newSelector(true)}}
}

// newDefaultUser is ACLCreateDefaultUser.
func newDefaultUser() *User {
	u := newUser("default")
	for _, r := range []string{"+@all", "~*", "&*", "on", "nopass"} {
		u.set(r)
	}
	return u
}

// NewUser is ACL SETUSER of a user that does not exist yet: a user created as ACLCreateUser does, with
// rules applied in order (a selector may be spread over several rules, as ACL SETUSER allows). The error
// is Redis's reply, without the leading '-': "ERR Error in ACL SETUSER modifier '<rule>': Syntax error".
func NewUser(name string, rules ...string) (*User, error) {
	if hasSpaces(name) {
		return nil, setUserError("ERR Usernames can't contain spaces or null characters")
	}
	return newUser(name).With(rules...)
}

// With is ACL SETUSER of an existing user: a new user, u with rules applied in order; u does not change.
// If a rule is refused none is applied, and the error is as NewUser's.
func (u *User) With(rules ...string) (*User, error) {
	merged, bad := mergeSelectorArgs(rules)
	if bad >= 0 {
		return nil, setUserError(mapCRLF("ERR Unmatched parenthesis in acl selector starting at '" + cstring(rules[bad]) + "'."))
	}
	nu := u.clone()
	for _, r := range merged {
		if e := nu.set(r); e != errOK {
			return nil, setUserError(mapCRLF("ERR Error in ACL SETUSER modifier '" + cstring(r) + "': " + e.String()))
		}
	}
	nu.finish()
	return nu, nil
}

type setUserError string

func (e setUserError) Error() string { return string(e) }

func (u *User) clone() *User {
	nu := &User{name: u.name, flags: u.flags, passwords: slices.Clone(u.passwords)}
	for _, s := range u.selectors {
		nu.selectors = append(nu.selectors, s.clone())
	}
	return nu
}

// finish computes what the user's methods return, once its rules are applied.
func (u *User) finish() {
	u.descr = u.describe()
	u.unrestricted = false
	for _, s := range u.selectors {
		if s.unrestricted() {
			u.unrestricted = true
		}
	}
}

// Name is the user's name.
func (u *User) Name() string { return u.name }

// Enabled tells whether the user is on.
func (u *User) Enabled() bool { return u.flags&flagOff == 0 }

// NoPass tells whether the user takes any password.
func (u *User) NoPass() bool { return u.flags&flagNoPass != 0 }

// Authenticate tells whether password opens the user: on, and nopass or one of its passwords (compared in
// constant time on their SHA-256).
func (u *User) Authenticate(password []byte) bool {
	if !u.Enabled() {
		return false
	}
	if u.NoPass() {
		return true
	}
	sum := sha256.Sum256(password)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	ok := 0
	for _, p := range u.passwords {
		ok |= subtle.ConstantTimeCompare(hx[:], []byte(p))
	}
	return ok == 1
}

// Unrestricted tells whether the user may run every command on every key and channel, so that the proxy can
// skip the checks: some selector allows every command (allcommands or +@all, or every command one by
// one), all keys (allkeys or ~*; "%RW~*" is not enough, as '*' does not match the empty key) and all
// channels (allchannels or &*). Check allows every request of such a user.
func (u *User) Unrestricted() bool { return u.unrestricted }

// Denial is why a command is refused.
type Denial uint8

const (
	Allowed     Denial = iota
	DenyCommand        // ACL_DENIED_CMD
	DenyKey            // ACL_DENIED_KEY
	DenyChannel        // ACL_DENIED_CHANNEL
)

// Error is the error Redis replies for a denial (processCommand), without the leading '-' and CRLF; "" for
// Allowed.
func (d Denial) Error(cmd *command.Command) string {
	switch d {
	case DenyCommand:
		return "NOPERM this user has no permissions to run the '" + cmd.Name + "' command"
	case DenyKey:
		return "NOPERM this user has no permissions to access one of the keys used as arguments"
	case DenyChannel:
		return "NOPERM this user has no permissions to access one of the channels used as arguments"
	}
	return ""
}

// DryRunError is ACL DRYRUN's message for a denial (getAclErrorMessage and aclCommand), the bulk string
// Redis replies: "This user has no permissions to run the 'set' command", "This user has no permissions to
// access the 'foo' key", "... the 'ch' channel". args and pos are the request and the position Check gave;
// the argument is shown as C's %s shows it, up to a NUL byte. "" for Allowed (Redis replies +OK).
func (d Denial) DryRunError(u *User, cmd *command.Command, args [][]byte, pos int) string {
	var arg string
	if pos >= 0 && pos < len(args) {
		arg = cstring(string(args[pos]))
	}
	switch d {
	case DenyCommand:
		return "This user has no permissions to run the '" + cmd.Name + "' command"
	case DenyKey:
		return "This user has no permissions to access the '" + arg + "' key"
	case DenyChannel:
		return "This user has no permissions to access the '" + arg + "' channel"
	}
	return ""
}

// Describe is the user's ACL LIST line: "user alice on #<sha256> ~k* resetchannels -@all +get".
func (u *User) Describe() string {
	if u.descr == "" {
		return u.describe()
	}
	return u.descr
}

// Info is what ACL GETUSER shows of a user, in Redis 7.0's order.
type Info struct {
	Flags     []string // on/off, nopass, ...
	Passwords []string // SHA-256 hex
	Commands  string   // "+@all", "-@all +get", ...
	Keys      string   // "~*", "%R~a* ~b", ""
	Channels  string   // "&*", ""
	Selectors []SelectorInfo
}

// SelectorInfo is one selector of ACL GETUSER.
type SelectorInfo struct{ Commands, Keys, Channels string }

// Info is the user's ACL GETUSER view.
func (u *User) Info() Info {
	var in Info
	in.Flags = []string{}
	for i, n := range userFlagNames {
		if u.flags&(1<<i) != 0 {
			in.Flags = append(in.Flags, n)
		}
	}
	in.Passwords = append([]string{}, u.passwords...)
	root := u.selectors[0].info()
	in.Commands, in.Keys, in.Channels = root.Commands, root.Keys, root.Channels
	in.Selectors = []SelectorInfo{}
	for _, s := range u.selectors[1:] {
		in.Selectors = append(in.Selectors, s.info())
	}
	return in
}

// Categories are the ACL category names without '@', as ACL CAT lists them.
func Categories() []string { return slices.Clone(catNames) }

// CommandsIn are the commands of a category as ACL CAT <category> lists them (containers' subcommands as
// "container|sub"); ok false for an unknown category. The name is compared case-insensitively, without
// '@'. Redis lists the commands in the order of its command dictionary, which changes from one start to
// the next; this is the order of command.All().
func CommandsIn(category string) (names []string, ok bool) {
	cat, ok := categoryByName(category)
	if !ok {
		return nil, false
	}
	names = []string{}
	for _, c := range command.All() {
		if c.Categories&cat != 0 {
			names = append(names, c.Name)
		}
	}
	return names, true
}

// catNames and catBits are Redis's ACLCommandCategories, in its order.
var catNames, catBits = func() ([]string, []command.Category) {
	var names []string
	var bits []command.Category
	for i := 0; i < 32; i++ {
		c := command.Category(1) << i
		n := c.String()
		if !strings.HasPrefix(n, "@") {
			break
		}
		names = append(names, n[1:])
		bits = append(bits, c)
	}
	return names, bits
}()

// categoryByName is ACLGetCommandCategoryFlagByName: strcasecmp on the name as a C string.
func categoryByName(name string) (command.Category, bool) {
	name = cstring(name)
	for i, n := range catNames {
		if asciiEqualFold(name, n) {
			return catBits[i], true
		}
	}
	return 0, false
}

// cstring is s as a C string: up to its first NUL byte.
func cstring(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// hasSpaces is ACLStringHasSpaces: a C isspace character or a NUL byte.
func hasSpaces(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0:
			return true
		}
	}
	return false
}

// sdstrim is Redis's sdstrim: cut the characters of cset from both ends. strchr finds the terminating NUL of
// cset too, so NUL bytes are cut as well.
func sdstrim(s, cset string) string {
	in := func(c byte) bool { return c == 0 || strings.IndexByte(cset, c) >= 0 }
	i, j := 0, len(s)
	for i < j && in(s[i]) {
		i++
	}
	for j > i && in(s[j-1]) {
		j--
	}
	return s[i:j]
}

// mapCRLF is sdsmapchars(s, "\r\n", "  "), which Redis applies to error replies.
func mapCRLF(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// mergeSelectorArgs is ACLMergeSelectorArguments: a word starting with '(' and not ending with ')' starts
// a selector that takes the following words, joined by spaces, up to one ending with ')'. bad is the index
// of the word of an unclosed selector, or -1.
func mergeSelectorArgs(argv []string) (merged []string, bad int) {
	open := -1
	var sel string
	for j, op := range argv {
		if len(op) > 0 && op[0] == '(' && op[len(op)-1] != ')' {
			sel = op
			open = j
			continue
		}
		if open != -1 {
			sel += " " + cstring(op)
			if len(op) > 0 && op[len(op)-1] == ')' {
				open = -1
				merged = append(merged, sel)
			}
			continue
		}
		merged = append(merged, op)
	}
	if open != -1 {
		return nil, open
	}
	return merged, -1
}
