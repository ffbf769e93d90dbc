package command

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestAtoi(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"0", 0},
		{"12", 12},
		{" \t\n\v\f\r12", 12},
		{"+3", 3},
		{"-3", -3},
		{"02", 2},
		{"2abc", 2},
		{"2\x003", 2},
		{"abc", 0},
		{"", 0},
		{"- 3", 0},
		{"2147483647", math.MaxInt32},
		{"2147483648", math.MinInt32},            // low 32 bits
		{"4294967297", 1},                        // low 32 bits
		{"9223372036854775807", -1},              // LONG_MAX, low 32 bits
		{"99999999999999999999999", -1},          // strtol saturates at LONG_MAX
		{"-99999999999999999999999", 0},          // LONG_MIN, low 32 bits
		{"-9223372036854775808", 0},              // LONG_MIN
		{"-4294967295", 1},                       // low 32 bits of -(2^32-1)
		{"18446744073709551617", -1},             // saturates, does not wrap
		{strconv.Itoa(math.MaxInt32) + "0", -10}, // 21474836470 = 0x4FFFFFFF6
		{"922337203685477580799", -1},            // overflow in the last digits saturates
		{"-922337203685477580799", 0},            //
		{"  -17xyz", -17},                        //
	}
	for _, tc := range tests {
		if got := atoi([]byte(tc.in)); got != tc.want {
			t.Errorf("atoi(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestCstrEqualFold(t *testing.T) {
	tests := []struct {
		arg, word string
		want      bool
	}{
		{"STREAMS", "STREAMS", true},
		{"streams", "STREAMS", true},
		{"StReAmS", "streams", true},
		{"streams\x00junk", "STREAMS", true}, // strcasecmp stops at the NUL
		{"stream", "STREAMS", false},
		{"streamsx", "STREAMS", false},
		{"\u017ftreams", "STREAMS", false}, // no Unicode folding (ſ)
		{"\u212aEYS", "KEYS", false},       // nor the Kelvin sign
		{"", "KEYS", false},
	}
	for _, tc := range tests {
		if got := cstrEqualFold([]byte(tc.arg), tc.word); got != tc.want {
			t.Errorf("cstrEqualFold(%q, %q) = %v", tc.arg, tc.word, got)
		}
	}
}

// TestGetkeysProcs checks that the hand-written getkeys procedures name real commands, and that every
// command COMMAND flags movablekeys has one (true of Redis 7.0, where each has a getkeys_proc).
func TestGetkeysProcs(t *testing.T) {
	for name := range getkeysProcs {
		if byName[name] == nil {
			t.Errorf("getkeysProcs: %s is not in the table", name)
		}
	}
	for _, c := range all {
		if c.Has(MovableKeys) && c.getkeys == nil {
			t.Errorf("%s is movablekeys but has no getkeys procedure", c.Name)
		}
	}
}

func TestNameTable(t *testing.T) {
	check := func(tab *nameTable, m map[string]*Command) {
		for name, c := range m {
			for _, v := range []string{name, strings.ToUpper(name), mixedCase(name)} {
				if got := tab.get([]byte(v)); got != c {
					t.Errorf("get(%q) = %v, want %s", v, got, c.Name)
				}
			}
			for _, v := range []string{name + "x", name[:len(name)-1], name + "\x00", "\u017f" + name} {
				if got := tab.get([]byte(v)); got != m[v] {
					t.Errorf("get(%q) = %v, want %v", v, got, m[v])
				}
			}
		}
	}
	check(topLevel, byName)
	for _, c := range byName {
		if c.Subcommands != nil {
			check(c.subs, c.Subcommands)
		}
	}
}

func mixedCase(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i += 2 {
		if 'a' <= b[i] && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzLookup checks the name tables against a plain map lookup of the ASCII-lowered name.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"get", "GET", "client", "cLiEnT", "georadiusbymember_ro", "", "\x00", "ſet"} {
		f.Add(s, "setname")
	}
	f.Fuzz(func(t *testing.T, name, sub string) {
		want := byName[asciiLower(name)]
		got := topLevel.get([]byte(name))
		if got != want {
			t.Fatalf("get(%q) = %v, want %v", name, got, want)
		}
		if want != nil && want.subs != nil {
			if got, want := want.subs.get([]byte(sub)), want.Subcommands[asciiLower(sub)]; got != want {
				t.Fatalf("%s: get(%q) = %v, want %v", name, sub, got, want)
			}
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
