package proxy

import (
	"testing"

	"github.com/slotproxy/slotproxy/resp"
)

// TestSumKeyspace: the masters' keyspace lines summed per database, avg_ttl weighted by expires, RESP2 and
// RESP3 replies alike, databases in order; a master without keys adds nothing.
func TestSumKeyspace(t *testing.T) {
	bulk := func(s string) []byte { return resp.AppendBulkString(nil, s) }
	for _, tc := range []struct {
		name    string
		replies [][]byte
		want    string
	}{
		{"none", nil, "# Keyspace\r\n"},
		{"empty masters", [][]byte{bulk("# Keyspace\r\n"), bulk("# Keyspace\r\n")}, "# Keyspace\r\n"},
		{"sum", [][]byte{
			bulk("# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n"),
			bulk("# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n"),
			resp.AppendVerbatim(nil, "txt", []byte("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n")),
		}, "# Keyspace\r\ndb0:keys=16,expires=8,avg_ttl=2500\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n"},
	} {
		if got := string(sumKeyspace(tc.replies)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
