package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// INFO through the proxy is a master's INFO with the fields that describe a server rewritten to describe
// the proxy: its process, its clients, its command counts and rate, its memory. The cluster's data
// (keyspace, replication, persistence) stays the master's.

// rateSampler keeps a rate as Redis keeps instantaneous_ops_per_sec: the mean of the last 16 samples, one
// per tick.
type rateSampler struct {
	mu      sync.Mutex
	last    uint64    // the total at the last sample
	lastAt  time.Time // and when
	rates   [16]float64
	n, next int
}

// sample reports whether total moved.
func (o *rateSampler) sample(total uint64, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	moved := total != o.last
	if !o.lastAt.IsZero() {
		if d := now.Sub(o.lastAt).Seconds(); d > 0 {
			o.rates[o.next] = float64(total-o.last) / d
			o.next = (o.next + 1) % len(o.rates)
			o.n = min(o.n+1, len(o.rates))
		}
	}
	o.last, o.lastAt = total, now
	return moved
}

// total is the total at the last sample.
func (o *rateSampler) total() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

func (o *rateSampler) rate() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sum float64
	for i := range o.n {
		sum += o.rates[i]
	}
	if o.n == 0 {
		return 0
	}
	return sum / float64(o.n)
}

// samplers are the rates INFO shows, sampled on every tick.
type samplers struct {
	ops, in, out rateSampler
	memPeak      atomic.Uint64 // the highest used_memory seen (sampled every second and at INFO)
	memStartup   uint64        // used_memory when the server started

	mu     sync.Mutex // sampleRates runs on the ticker and at INFO
	at     time.Time  // the last sample
	peakAt time.Time  // when memPeak was last sampled
}

// sampleRates takes a sample of every rate, and of the memory peak once a second. It reports whether
// anything moved since the last sample.
func (s *Server) sampleRates(now time.Time) bool {
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = now
	in, out := s.clientBytes()
	moved := r.in.sample(in, now)
	moved = r.out.sample(out, now) || moved
	ops := r.ops.total()
	if moved { // every command reads or writes a client's bytes; summing the command counts is not free
		ops = uint64(s.totalCommands())
	}
	r.ops.sample(ops, now)
	if now.Sub(r.peakAt) >= time.Second {
		r.peakAt = now
		s.rates.notePeak(readMemory().used)
	}
	return moved
}

// since is how long ago the last sample was taken.
func (r *samplers) since(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return now.Sub(r.at)
}

func (r *samplers) notePeak(used uint64) {
	for {
		p := r.memPeak.Load()
		if used <= p || r.memPeak.CompareAndSwap(p, used) {
			return
		}
	}
}

// goMemory is the Go runtime's memory under the names of Redis's allocator figures, read without stopping
// the world.
type goMemory struct {
	used      uint64 // allocated: heap objects, stacks, runtime metadata (Redis's used_memory)
	allocated uint64 // heap objects (allocator_allocated)
	active    uint64 // heap spans in use (allocator_active)
	resident  uint64 // mapped and not returned to the OS (allocator_resident)
}

var memSamples = []rtmetrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/free:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
}

var memSamplesMu sync.Mutex

func readMemory() goMemory {
	memSamplesMu.Lock()
	defer memSamplesMu.Unlock()
	rtmetrics.Read(memSamples)
	v := func(i int) uint64 {
		if memSamples[i].Value.Kind() == rtmetrics.KindUint64 {
			return memSamples[i].Value.Uint64()
		}
		return 0
	}
	total, released, free, unused, objects := v(0), v(1), v(2), v(3), v(4)
	return goMemory{used: total - released - free - unused, allocated: objects, active: objects + unused,
		resident: total - released}
}

// processRSS is the resident set size of the process in bytes, 0 if unknown.
func processRSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return pages * uint64(os.Getpagesize())
}

// bytesToHuman formats n as Redis's *_human fields do.
func bytesToHuman(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	v := float64(n)
	for _, unit := range []string{"K", "M", "G", "T", "P"} {
		v /= 1024
		if v < 1024 || unit == "P" {
			return strconv.FormatFloat(v, 'f', 2, 64) + unit
		}
	}
	return ""
}

func ratio(a, b uint64) string {
	if b == 0 {
		return "0.00"
	}
	return strconv.FormatFloat(float64(a)/float64(b), 'f', 2, 64)
}

func diff(a, b uint64) string { return strconv.FormatInt(int64(a)-int64(b), 10) }

func cpuSeconds(tv unix.Timeval) string { return fmt.Sprintf("%d.%06d", tv.Sec, tv.Usec) }

// newRunID is a run_id as Redis makes one: 40 random hex digits.
func newRunID() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hostOS is Redis's os field: kernel name, release and machine.
var hostOS = func() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return runtime.GOOS
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " +
		unix.ByteSliceToString(u.Machine[:])
}()

// proxyInfoFields are the fields INFO takes from the proxy, by name: everything that describes a server
// (process, clients, memory, CPU, client traffic). The data's fields stay a master's (replication,
// persistence, scripts, maxmemory and its policy, as CONFIG GET gives them), or every master's summed
// (the keyspace and clusterCounters). What the proxy does not keep is 0, as for a Redis that has none:
// client_recent_max_*_buffer, mem_clients_normal, clients_in_timeout_table, the Lua and function memory.
func (s *Server) proxyInfoFields() map[string]string {
	st := &s.stats
	now := time.Now()
	up := now.Sub(s.start)
	_, port, _ := net.SplitHostPort(s.Addr())
	exe, _ := os.Executable()
	maxClients := s.live.maxClients.Load()
	if s.rates.since(now) >= tickEvery { // the ticker samples once a second while the proxy is idle
		s.sampleRates(now)
	}
	in, out := s.clientBytes()
	reads, writes := s.clientIO()
	mem := readMemory()
	s.rates.notePeak(mem.used)
	peak := s.rates.memPeak.Load()
	rss := processRSS()
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	u := strconv.FormatUint
	total := totalMemory()
	f := map[string]string{
		"os":                              hostOS,
		"arch_bits":                       strconv.Itoa(strconv.IntSize),
		"gcc_version":                     "0.0.0",
		"process_id":                      strconv.Itoa(os.Getpid()),
		"process_supervised":              "no",
		"run_id":                          s.runID,
		"tcp_port":                        port,
		"server_time_usec":                strconv.FormatInt(now.UnixMicro(), 10),
		"uptime_in_seconds":               strconv.FormatInt(int64(up.Seconds()), 10),
		"uptime_in_days":                  strconv.FormatInt(int64(up.Hours()/24), 10),
		"hz":                              "10",
		"configured_hz":                   "10",
		"executable":                      exe,
		"config_file":                     s.cfg.Path,
		"io_threads_active":               "0",
		"connected_clients":               strconv.FormatInt(st.Clients.Load(), 10),
		"cluster_connections":             "0",
		"maxclients":                      strconv.FormatInt(maxClients, 10),
		"client_recent_max_input_buffer":  "0",
		"client_recent_max_output_buffer": "0",
		"blocked_clients":                 strconv.FormatInt(st.Blocked.Load(), 10),
		"tracking_clients":                "0",
		"clients_in_timeout_table":        "0",
		"total_connections_received":      strconv.FormatInt(st.ClientsTotal.Load(), 10),
		"total_commands_processed":        strconv.FormatInt(s.totalCommands(), 10),
		"instantaneous_ops_per_sec":       strconv.FormatInt(int64(s.rates.ops.rate()), 10),
		"total_net_input_bytes":           u(in, 10),
		"total_net_output_bytes":          u(out, 10),
		"instantaneous_input_kbps":        strconv.FormatFloat(s.rates.in.rate()/1024, 'f', 2, 64),
		"instantaneous_output_kbps":       strconv.FormatFloat(s.rates.out.rate()/1024, 'f', 2, 64),
		"rejected_connections":            strconv.FormatInt(st.ClientsRejected.Load(), 10),
		"evicted_clients":                 "0",
		"total_error_replies":             u(sumValues(s.errorTotals()), 10),
		"total_reads_processed":           u(reads, 10),
		"total_writes_processed":          u(writes, 10),

		"used_memory":                   u(mem.used, 10),
		"used_memory_human":             bytesToHuman(mem.used),
		"used_memory_rss":               u(rss, 10),
		"used_memory_rss_human":         bytesToHuman(rss),
		"used_memory_peak":              u(peak, 10),
		"used_memory_peak_human":        bytesToHuman(peak),
		"used_memory_peak_perc":         strconv.FormatFloat(float64(mem.used)*100/float64(max(peak, 1)), 'f', 2, 64) + "%",
		"used_memory_overhead":          u(mem.used, 10), // a proxy holds no dataset: all of it is overhead
		"used_memory_startup":           u(s.rates.memStartup, 10),
		"used_memory_dataset":           "0",
		"used_memory_dataset_perc":      "0.00%",
		"allocator_allocated":           u(mem.allocated, 10),
		"allocator_active":              u(mem.active, 10),
		"allocator_resident":            u(mem.resident, 10),
		"total_system_memory":           u(total, 10),
		"total_system_memory_human":     bytesToHuman(total),
		"used_memory_lua":               "0",
		"used_memory_vm_eval":           "0",
		"used_memory_lua_human":         "0B",
		"used_memory_scripts_eval":      "0",
		"used_memory_vm_functions":      "0",
		"used_memory_vm_total":          "0",
		"used_memory_vm_total_human":    "0B",
		"used_memory_functions":         "0",
		"used_memory_scripts":           "0",
		"used_memory_scripts_human":     "0B",
		"allocator_frag_ratio":          ratio(mem.active, mem.allocated),
		"allocator_frag_bytes":          diff(mem.active, mem.allocated),
		"allocator_rss_ratio":           ratio(mem.resident, mem.active),
		"allocator_rss_bytes":           diff(mem.resident, mem.active),
		"rss_overhead_ratio":            ratio(rss, mem.resident),
		"rss_overhead_bytes":            diff(rss, mem.resident),
		"mem_fragmentation_ratio":       ratio(rss, mem.used),
		"mem_fragmentation_bytes":       diff(rss, mem.used),
		"mem_not_counted_for_evict":     "0",
		"mem_replication_backlog":       "0",
		"mem_total_replication_buffers": "0",
		"mem_clients_slaves":            "0",
		"mem_clients_normal":            "0",
		"mem_cluster_links":             "0",
		"mem_aof_buffer":                "0",
		"mem_allocator":                 runtime.Version(),
		"active_defrag_running":         "0",
		"lazyfree_pending_objects":      "0",
		"lazyfreed_objects":             "0",

		"used_cpu_sys":              cpuSeconds(self.Stime),
		"used_cpu_user":             cpuSeconds(self.Utime),
		"used_cpu_sys_children":     cpuSeconds(children.Stime),
		"used_cpu_user_children":    cpuSeconds(children.Utime),
		"used_cpu_sys_main_thread":  cpuSeconds(self.Stime), // the event loops are the proxy's main threads
		"used_cpu_user_main_thread": cpuSeconds(self.Utime),
	}
	return f
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

// clientIO are the reads from clients and the writes to them, all loops.
func (s *Server) clientIO() (reads, writes uint64) {
	for _, l := range s.loopList() {
		reads += l.reads.Load()
		writes += l.writes.Load()
	}
	return reads, writes
}

// clientBytes are the bytes read from and written to clients, all loops.
func (s *Server) clientBytes() (in, out uint64) {
	for _, l := range s.loopList() {
		in += l.bytesIn.Load()
		out += l.bytesOut.Load()
	}
	return in, out
}
