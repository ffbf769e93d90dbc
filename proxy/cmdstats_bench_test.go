package proxy

import (
	"testing"

	"github.com/slotproxy/slotproxy/proxy/command"
)

// BenchmarkRecord is what counting a reply costs the request path: one histogram bucket and the latency
// sum, on the loop's own counters.
func BenchmarkRecord(b *testing.B) {
	l := &loop{cmdStats: make([]cmdStat, command.Count()), now: 1_000_000}
	get, _ := command.Lookup([][]byte{[]byte("GET"), []byte("k")})
	b.ReportAllocs()
	for i := range b.N {
		l.record(get.Index, 1_000_000-int64(i&1023)*1000, outcomeOK)
	}
}
