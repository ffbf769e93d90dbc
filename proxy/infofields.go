package proxy

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// INFO through the proxy is a master's INFO with the fields that describe a server rewritten to describe
// the proxy: its process, its clients, its command counts and rate, its memory. The cluster's data
// (keyspace, replication, persistence) stays the master's.

// opsSampler keeps instantaneous_ops_per_sec as Redis does: the rate over the last 16 samples, one per tick.
type opsSampler struct {
	mu      sync.Mutex
	last    int64     // commands at the last sample
	lastAt  time.Time // and when
	rates   [16]float64
	n, next int
}

func (o *opsSampler) sample(total int64, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.lastAt.IsZero() {
		if d := now.Sub(o.lastAt).Seconds(); d > 0 {
			o.rates[o.next] = float64(total-o.last) / d
			o.next = (o.next + 1) % len(o.rates)
			o.n = min(o.n+1, len(o.rates))
		}
	}
	o.last, o.lastAt = total, now
}

func (o *opsSampler) rate() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sum float64
	for i := range o.n {
		sum += o.rates[i]
	}
	if o.n == 0 {
		return 0
	}
	return int64(sum / float64(o.n))
}

// proxyInfoFields are the fields INFO takes from the proxy, by name.
func (s *Server) proxyInfoFields() map[string]string {
	st := &s.stats
	up := time.Since(s.start)
	_, port, _ := net.SplitHostPort(s.Addr())
	exe, _ := os.Executable()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	maxClients := s.live.maxClients.Load()
	in, out := s.clientBytes()
	return map[string]string{
		"process_id":                 strconv.Itoa(os.Getpid()),
		"tcp_port":                   port,
		"uptime_in_seconds":          strconv.FormatInt(int64(up.Seconds()), 10),
		"uptime_in_days":             strconv.FormatInt(int64(up.Hours()/24), 10),
		"executable":                 exe,
		"config_file":                s.cfg.Path,
		"io_threads_active":          "0",
		"connected_clients":          strconv.FormatInt(st.Clients.Load(), 10),
		"maxclients":                 strconv.FormatInt(maxClients, 10),
		"blocked_clients":            strconv.FormatInt(st.Blocked.Load(), 10),
		"total_connections_received": strconv.FormatInt(st.ClientsTotal.Load(), 10),
		"total_commands_processed":   strconv.FormatInt(s.totalCommands(), 10),
		"instantaneous_ops_per_sec":  strconv.FormatInt(s.ops.rate(), 10),
		"rejected_connections":       strconv.FormatInt(st.ClientsRejected.Load(), 10),
		"total_error_replies":        strconv.FormatUint(sumValues(s.errorTotals()), 10),
		"total_net_input_bytes":      strconv.FormatUint(in, 10),
		"total_net_output_bytes":     strconv.FormatUint(out, 10),
		"used_memory":                strconv.FormatUint(ms.HeapAlloc, 10),
		"used_memory_rss":            strconv.FormatUint(ms.Sys, 10),
		"used_memory_peak":           strconv.FormatUint(ms.HeapSys, 10),
		"total_system_memory":        strconv.FormatUint(totalMemory(), 10),
	}
}

// rewriteInfoFields replaces the values of the fields in fields, wherever they stand in an INFO text.
func rewriteInfoFields(text []byte, fields map[string]string) []byte {
	out := make([]byte, 0, len(text)+256)
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i+1], text[i+1:]
		} else {
			text = nil
		}
		if colon := bytes.IndexByte(line, ':'); colon > 0 && line[0] != '#' {
			if v, ok := fields[string(line[:colon])]; ok {
				out = append(append(append(out, line[:colon+1]...), v...), "\r\n"...)
				continue
			}
		}
		out = append(out, line...)
	}
	return out
}

// totalMemory is the machine's memory in bytes (Redis's total_system_memory), 0 if unknown.
func totalMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "MemTotal:" {
			kb, _ := strconv.ParseUint(string(f[1]), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func sumValues(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// clientBytes are the bytes read from and written to clients, all loops.
func (s *Server) clientBytes() (in, out uint64) {
	for _, l := range s.loopList() {
		in += l.bytesIn.Load()
		out += l.bytesOut.Load()
	}
	return in, out
}
