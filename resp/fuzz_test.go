package resp

import (
	"bytes"
	"testing"
)

// FuzzCommandParser: no panic; the same commands whether the input arrives whole or cut at fuzzer-chosen
// points; re-encoding what was parsed parses back to the same arguments.
func FuzzCommandParser(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
		"*1\r\n$4\r\nPING\r\n*0\r\nPING\r\n",
		"SET a \"b c\" '\\'d'\r\n",
		"*1\r\n$4294967296\r\n",
		"*3000000000\r\n",
		"*1\r\nx\r\n",
		"*1\r\n$-1\r\n",
		"ECHO \"\\x4\r\n",
		"\r\n\n\r",
		"*2\r\n$1\r\na",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole, errWhole := parseAll(t, data, 0)
		split, errSplit := parseAll(t, data, int(chunk)+1)
		if (errWhole == nil) != (errSplit == nil) || !equal(whole, split) {
			t.Fatalf("whole: %q %v; in chunks of %d: %q %v", whole, errWhole, int(chunk)+1, split, errSplit)
		}
		for _, cmd := range whole {
			args := make([][]byte, len(cmd))
			for i, a := range cmd {
				args[i] = []byte(a)
			}
			again, err := parseAll(t, AppendCommand(nil, args...), 0)
			if err != nil || len(again) != 1 || !equal(again, [][]string{cmd}) {
				t.Fatalf("round trip of %q: %q, %v", cmd, again, err)
			}
		}
	})
}

// FuzzReplyScanner: no panic; lengths within the input; the same split of the stream into replies whether
// scanned whole or resumed byte by byte.
func FuzzReplyScanner(f *testing.F) {
	for _, r := range replies {
		f.Add([]byte(r))
	}
	f.Add([]byte("*2\r\n$5\r\nhello\r\n*1\r\n:1\r\n+OK\r\n"))
	f.Add([]byte("$1099511627776\r\n"))
	f.Add([]byte("*1099511627776\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := scanAll(t, data, len(data))
		bytewise := scanAll(t, data, 1)
		if len(whole) != len(bytewise) {
			t.Fatalf("whole %q, byte by byte %q", whole, bytewise)
		}
		for i := range whole {
			if !bytes.Equal(whole[i], bytewise[i]) {
				t.Fatalf("reply %d: whole %q, byte by byte %q", i, whole[i], bytewise[i])
			}
		}
	})
}

func scanAll(t *testing.T, data []byte, chunk int) [][]byte {
	var s ReplyScanner
	var out [][]byte
	var buf []byte
	for i := 0; i < len(data); {
		n := min(chunk, len(data)-i)
		buf = append(buf, data[i:i+n]...)
		i += n
		for len(buf) > 0 && len(buf) >= s.Need() {
			m, err := s.Scan(buf)
			if err != nil {
				return out
			}
			if m == 0 {
				break
			}
			if m > len(buf) {
				t.Fatalf("reply length %d beyond %d bytes", m, len(buf))
			}
			out = append(out, append([]byte(nil), buf[:m]...))
			buf = buf[m:]
		}
	}
	return out
}
