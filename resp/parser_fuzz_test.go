package resp

import "testing"

// FuzzCommandParser checks, for any input: no panic; n never exceeds the buffer and Need() is honest (both
// checked in feed); the input parsed whole gives what Redis gives (the reference transliteration); fed in
// pieces of fuzzer-chosen sizes, at moving addresses, it gives the same commands, error, consumed bytes and
// resume point; and each command re-encoded with AppendCommand parses back to itself.
//
// The seeds are small: the fuzzer minimizes every new input, which for a 64 KiB one takes it minutes. The
// "too big" errors are covered by TestParseErrors and TestLiveRedis.
func FuzzCommandParser(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
		"*1\r\n$4\r\nPING\r\n*0\r\nPING\r\n*-1\r\n\r\n\n",
		"*1\rX$4\rXPINGxx",
		"SET a \"b c\" '\\'d' \"\\x41\\n\"\r\n",
		"ECHO a\"b c\" d'e'\r\n",
		"ECHO \"a\"b\r\n",
		"ECHO \"a\\\"\r\n",
		"ECHO \"\\x4\r\n",
		"*1\r\n$4294967296\r\n",
		"*1\r\n$536870912\r\n",
		"*1\r\n$536870913\r\n",
		"*2147483647\r\n$4\r\nPING\r\n",
		"*2147483648\r\n",
		"*3000000000\r\n",
		"*-0\r\n*01\r\n",
		"*1\r\nx\r\n",
		"*1\r\n$-1\r\n",
		"*1\x00\r\n$4\r\nPING\r\n",
		"PI\x00NG\r\n",
		"\r\n\n\r",
		"*2\r\n$1\r\na",
	} {
		f.Add([]byte(s), []byte{3, 1, 7})
	}
	f.Fuzz(func(t *testing.T, data, pieces []byte) {
		whole := feed(t, data, nil, false)
		if len(data) > MaxInlineSize {
			return // Redis's own outcome then depends on how the bytes arrive
		}
		if ref := refParse(data); !samePrefix(whole, ref) {
			t.Fatalf("Parse(%q) = %+v, Redis (reference) %+v", data, whole, ref)
		}
		sizes := make([]int, len(pieces))
		for i, p := range pieces {
			sizes[i] = int(p)
		}
		// Moving the buffer on every piece costs O(n^2): only for small inputs.
		if split := feed(t, data, sizes, len(data) <= 4096); !samePrefix(whole, split) {
			t.Fatalf("Parse(%q) whole = %+v, in pieces %v = %+v", data, whole, sizes, split)
		}
		for _, cmd := range whole.cmds {
			args := make([][]byte, len(cmd))
			for i, a := range cmd {
				args[i] = []byte(a)
			}
			enc := AppendCommand(nil, args...)
			if again := feed(t, enc, nil, false); !cmdsEqual(again.cmds, [][]string{cmd}) ||
				again.consumed != len(enc) || again.err != "" {
				t.Fatalf("round trip of %q: %+v", cmd, again)
			}
		}
	})
}

func samePrefix(a, b parsed) bool {
	return cmdsEqual(a.cmds, b.cmds) && a.err == b.err && a.consumed == b.consumed && a.qbPos == b.qbPos
}
