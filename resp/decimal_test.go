package resp

import (
	"math"
	"testing"
)

// ParseDecimal must be Redis's string2ll exactly: bulk lengths and key counts are read with it.
func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"-12", -12, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"18446744073709551616", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"-0", 0, false},
		{"01", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1a", 0, false},
		{"1\x00", 0, false},
		{"000000000000000000001", 0, false},
	}
	for _, tc := range tests {
		n, ok := ParseDecimal([]byte(tc.in))
		if n != tc.n || ok != tc.ok {
			t.Errorf("ParseDecimal(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}
