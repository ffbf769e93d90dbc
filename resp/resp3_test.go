package resp

import (
	"fmt"
	"testing"
)

// TestResp3Readers: MapElems, VerbatimValue and ScalarText on well-formed and broken replies.
func TestResp3Readers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // fmt of the elements, or "!" when not ok
	}{
		{"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n,2.5\r\n", `["+a\r\n" ":1\r\n" "$1\r\nb\r\n" ",2.5\r\n"]`},
		{"%0\r\n", `[]`},
		{"%1\r\n+a\r\n", "!"},             // a key without its value
		{"%1\r\n+a\r\n:1\r\n:2\r\n", "!"}, // more than it declares
		{"*2\r\n+a\r\n:1\r\n", "!"},       // an array is not a map
		{"%-1\r\n", "!"},                  // no null map in RESP3
		{"%1\r\n%1\r\n+k\r\n+v\r\n_\r\n", `["%1\r\n+k\r\n+v\r\n" "_\r\n"]`},
	} {
		elems, ok := MapElems([]byte(tc.in), nil)
		got := "!"
		if ok {
			got = fmt.Sprintf("%q", elems)
		}
		if got != tc.want {
			t.Errorf("MapElems(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, format, text string }{
		{"=8\r\ntxt:abcd\r\n", "txt", "abcd"},
		{"=4\r\nmkd:\r\n", "mkd", ""},
		{"=3\r\ntxt\r\n", "!", ""},      // shorter than the format
		{"=8\r\ntxtxabcd\r\n", "!", ""}, // no colon
		{"=9\r\ntxt:abcd\r\n", "!", ""}, // length wrong
		{"$8\r\ntxt:abcd\r\n", "!", ""}, // a bulk
	} {
		format, text, ok := VerbatimValue([]byte(tc.in))
		if !ok {
			format = "!"
		}
		if format != tc.format || string(text) != tc.text {
			t.Errorf("VerbatimValue(%q) = %q %q %v, want %q %q", tc.in, format, text, ok, tc.format, tc.text)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"$3\r\n1.5\r\n", "1.5"}, {",1.5\r\n", "1.5"}, {",inf\r\n", "inf"}, {":-3\r\n", "-3"},
		{"(12345678901234567890\r\n", "12345678901234567890"}, {"+OK\r\n", "OK"},
		{"$-1\r\n", "!"}, {"_\r\n", "!"}, {"-ERR x\r\n", "!"}, {"*1\r\n:1\r\n", "!"}, {",1.5\r", "!"},
	} {
		v, ok := ScalarText([]byte(tc.in))
		got := string(v)
		if !ok {
			got = "!"
		}
		if got != tc.want {
			t.Errorf("ScalarText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
