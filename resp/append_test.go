package resp

import (
	"bytes"
	"testing"
)

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"array header", AppendArrayHeader(nil, 3), "*3\r\n"},
		{"array header null", AppendArrayHeader(nil, -1), "*-1\r\n"},
		{"bulk", AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{"bulk empty", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk string", AppendBulkString(nil, "hello"), "$5\r\nhello\r\n"},
		{"null bulk", AppendNullBulk(nil), "$-1\r\n"},
		{"null array", AppendNullArray(nil), "*-1\r\n"},
		{"int", AppendInt(nil, -9223372036854775808), ":-9223372036854775808\r\n"},
		{"simple", AppendSimple(nil, "PONG"), "+PONG\r\n"},
		{"simple with newline", AppendSimple(nil, "a\r\nb"), "+a  b\r\n"},
		{"ok", AppendOK(nil), "+OK\r\n"},
		{"error", AppendError(nil, "ERR unknown command"), "-ERR unknown command\r\n"},
		{"error with newlines", AppendError(nil, "ERR a\r\nb\nc"), "-ERR a  b c\r\n"},
		{"error from parser", AppendError(nil, "ERR "+ExpectedDollar('\r').Error()),
			"-ERR Protocol error: expected '$', got ' '\r\n"},
		{"command", AppendCommand(nil, []byte("GET"), []byte("k")), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
		{"command empty", AppendCommand(nil), "*0\r\n"},
		{"command strings", AppendCommandStrings(nil, "SET", "k", ""), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{"appends", AppendOK([]byte("+A\r\n")), "+A\r\n+OK\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestAppendAllocs(t *testing.T) {
	dst := make([]byte, 0, 1024)
	v := []byte("value")
	n := testing.AllocsPerRun(1000, func() {
		dst = AppendArrayHeader(dst[:0], 2)
		dst = AppendBulk(dst, v)
		dst = AppendInt(dst, 42)
		dst = AppendError(dst, "ERR x")
		dst = AppendCommandStrings(dst, "GET", "k")
	})
	if n != 0 {
		t.Errorf("appending into a large enough buffer allocates %v times", n)
	}
}

func BenchmarkAppendBulk(b *testing.B) {
	dst := make([]byte, 0, 256)
	v := bytes.Repeat([]byte("v"), 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendBulk(dst[:0], v)
	}
}
