package proxy

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
)

// Per-command statistics, as the client sees them: from the moment a command is parsed to the moment its
// reply is ready, blocking time and retries included. Each loop keeps its own counters and writes only its
// own, so the request path shares nothing across loops; readers (metrics, INFO) sum the loops. They are
// atomics only so that readers may read them while the loop writes.

// The histogram's buckets are backend.LatencyBounds: 50 µs to 10 s, as the nodes' reply latencies.
const numBuckets = backend.NumBuckets

var latencyBounds = backend.LatencyBounds

// cmdStat counts one command on one loop.
type cmdStat struct { // calls are the sum of the buckets: one atomic add fewer per reply
	rejected atomic.Uint64 // answered with an error by the proxy without reaching a node (refusals, CROSSSLOT ...)
	failed   atomic.Uint64 // error replies of nodes, and errors the proxy made after sending (lost node, deadline)
	deadline atomic.Uint64 // of failed: the request's deadline passed
	ns       atomic.Uint64 // total latency
	buckets  [numBuckets]atomic.Uint64
}

// outcome of a reply, for the statistics.
type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeRejected
	outcomeFailed
	outcomeDeadline
)

// record counts a reply to a command of index cmd (-1: an unknown command, counted in the total only)
// parsed at start and answered now: at the start of the loop's callback (l.now), not read per reply.
func (l *loop) record(cmd int, start int64, o outcome) {
	if cmd < 0 {
		l.unknown.Add(1)
		return
	}
	st := &l.cmdStats[cmd]
	d := max(l.now-start, 0)
	st.ns.Add(uint64(d))
	st.buckets[backend.Bucket(d)].Add(1)
	switch o {
	case outcomeRejected:
		st.rejected.Add(1)
	case outcomeDeadline:
		st.deadline.Add(1)
		st.failed.Add(1)
	case outcomeFailed:
		st.failed.Add(1)
	}
}

// outcome classifies the reply to a request the proxy sent.
func (r *request) outcome(reply []byte) outcome {
	if len(reply) == 0 || reply[0] != '-' {
		return outcomeOK
	}
	failed := r.be.Failed
	for _, c := range r.children {
		failed = failed || c.be.Failed
	}
	if failed && time.Now().UnixNano() >= r.be.Deadline {
		return outcomeDeadline
	}
	return outcomeFailed
}

// cmdTotals is one command's counters summed over the loops.
type cmdTotals struct {
	cmd                                   *command.Command
	calls, rejected, failed, deadline, ns uint64
	buckets                               [numBuckets]uint64
}

// commandTotals sums the loops' counters of every command called at least once, in the table's order.
func (s *Server) commandTotals() []cmdTotals {
	loops := s.loopList()
	var out []cmdTotals
	for _, c := range command.All() {
		t := cmdTotals{cmd: c}
		for _, l := range loops {
			st := &l.cmdStats[c.Index]
			t.rejected += st.rejected.Load()
			t.failed += st.failed.Load()
			t.deadline += st.deadline.Load()
			t.ns += st.ns.Load()
			for i := range t.buckets {
				n := st.buckets[i].Load()
				t.buckets[i] += n
				t.calls += n
			}
		}
		if t.calls > 0 {
			out = append(out, t)
		}
	}
	return out
}

// totalCommands is the number of replies the proxy gave, all loops, unknown commands included.
func (s *Server) totalCommands() int64 {
	var n uint64
	for _, t := range s.commandTotals() {
		n += t.calls
	}
	for _, l := range s.loopList() {
		n += l.unknown.Load()
	}
	return int64(n)
}

// percentile is the upper bound, in microseconds, of the bucket that holds the q-quantile (0 < q <= 1).
func (t *cmdTotals) percentile(q float64) float64 {
	rank := uint64(math.Ceil(q * float64(t.calls)))
	var seen uint64
	for i, n := range t.buckets {
		seen += n
		if seen >= rank {
			if i < len(latencyBounds) {
				return latencyBounds[i] * 1e6
			}
			break
		}
	}
	return math.Inf(1)
}

// appendCommandstats writes the "# Commandstats" section of INFO in Redis's format, from the proxy's counts.
func (s *Server) appendCommandstats(b []byte) []byte {
	b = append(b, "# Commandstats\r\n"...)
	for _, t := range s.commandTotals() {
		usec := float64(t.ns) / 1e3
		b = fmt.Appendf(b, "cmdstat_%s:calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,failed_calls=%d\r\n",
			t.cmd.Name, t.calls, uint64(usec), usec/float64(t.calls), t.rejected, t.failed)
	}
	return b
}

// appendLatencystats writes "# Latencystats" as Redis does (p50, p99, p99.9 in microseconds); the values are
// the upper bounds of the histogram buckets they fall in.
func (s *Server) appendLatencystats(b []byte) []byte {
	b = append(b, "# Latencystats\r\n"...)
	for _, t := range s.commandTotals() {
		b = fmt.Appendf(b, "latency_percentiles_usec_%s:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n", t.cmd.Name,
			t.percentile(0.5), t.percentile(0.99), t.percentile(0.999))
	}
	return b
}

// errorStats counts the loop's error replies by their first word (Redis's errorstats); only error replies
// take its lock.
type errorStats struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (e *errorStats) count(reply []byte) {
	end := 1
	for end < len(reply) && reply[end] != ' ' && reply[end] != '\r' {
		end++
	}
	e.mu.Lock()
	if e.n == nil {
		e.n = map[string]uint64{}
	}
	e.n[string(reply[1:end])]++
	e.mu.Unlock()
}

// errorTotals sums the loops' error counts by prefix.
func (s *Server) errorTotals() map[string]uint64 {
	out := map[string]uint64{}
	for _, l := range s.loopList() {
		l.errors.mu.Lock()
		for k, v := range l.errors.n {
			out[k] += v
		}
		l.errors.mu.Unlock()
	}
	return out
}

// appendErrorstats writes "# Errorstats" in Redis's format, from the proxy's replies.
func (s *Server) appendErrorstats(b []byte) []byte {
	b = append(b, "# Errorstats\r\n"...)
	totals := s.errorTotals()
	for _, k := range slices.Sorted(maps.Keys(totals)) {
		b = fmt.Appendf(b, "errorstat_%s:count=%d\r\n", k, totals[k])
	}
	return b
}
