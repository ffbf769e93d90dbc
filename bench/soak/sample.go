package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The proxy's metrics the samples keep (unlabelled series of its /metrics).
const (
	mRSS      = "process_resident_memory_bytes"
	mHeap     = "go_memstats_heap_inuse_bytes"
	mGoro     = "go_goroutines"
	mMallocs  = "go_memstats_mallocs_total"
	mAllocB   = "go_memstats_alloc_bytes_total"
	mCommands = "slotproxy_commands_total"
	mFailed   = "slotproxy_backend_failed_total"
	mClients  = "slotproxy_client_connections"
)

var wantMetrics = []string{mRSS, mHeap, mGoro, mMallocs, mAllocB, mCommands, mFailed, mClients}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// scrape reads the unlabelled series named in wantMetrics from the proxy's /metrics.
func scrape(addr string) (map[string]float64, error) {
	resp, err := httpClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, w := range wantMetrics {
			if name == w {
				if f, err := strconv.ParseFloat(strings.Fields(val)[0], 64); err == nil {
					m[name] = f
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, w := range wantMetrics {
		if _, ok := m[w]; !ok {
			return nil, fmt.Errorf("/metrics has no %s", w)
		}
	}
	return m, nil
}

// vmRSS is VmRSS of pid in bytes, from /proc/PID/status.
func vmRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseFloat(f[0], 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// sample is one look at the proxy.
type sample struct {
	at         time.Duration // since the load started
	label      string        // why it was taken, if not periodic
	vmRSS      float64
	m          map[string]float64
	ops, errs  int64 // client requests and errors so far
	err        error // the proxy could not be read
	busy       []string
	rssFailure bool
}

type sampler struct {
	cfg *config
	t0  time.Time
	ws  []*worker

	mu      sync.Mutex
	samples []sample
	csv     *os.File
}

func mib(b float64) float64 { return b / (1 << 20) }

// take samples the proxy now, prints a line and keeps it.
func (s *sampler) take(label string) sample {
	sm := sample{at: time.Since(s.t0), label: label, ops: liveOps.Load(), errs: liveErrs.Load()}
	if s.t0.IsZero() {
		sm.at = 0
	}
	var err error
	if sm.vmRSS, err = vmRSS(s.cfg.pid); err != nil {
		sm.err, sm.rssFailure = err, true
	} else if sm.m, err = scrape(s.cfg.metricsAddr); err != nil {
		sm.err = err
	}
	now := time.Now().UnixNano()
	for _, w := range s.ws {
		if since := w.busySince.Load(); since != 0 && time.Duration(now-since) >= 5*time.Second {
			sm.busy = append(sm.busy, fmt.Sprintf("client %d: %s of %d B in flight for %v", w.id,
				cmdNames[w.busyCmd.Load()], w.busySize.Load(), time.Duration(now-since).Round(100*time.Millisecond)))
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var prev *sample
	for i := len(s.samples) - 1; i >= 0; i-- {
		if s.samples[i].err == nil {
			prev = &s.samples[i]
			break
		}
	}
	s.samples = append(s.samples, sm)
	if sm.err != nil {
		logf("sample%s: the proxy cannot be read: %v", labelSuffix(label), sm.err)
		return sm
	}
	rate, perReq := "", ""
	if prev != nil && sm.at-prev.at >= 2*time.Second { // no rates over a moment (a labelled sample next to a periodic one)
		dt := (sm.at - prev.at).Seconds()
		dReq := sm.m[mCommands] - prev.m[mCommands]
		rate = fmt.Sprintf("  req/s %6.0f (proxy %6.0f)  errors %d", float64(sm.ops-prev.ops)/dt, dReq/dt, sm.errs-prev.errs)
		if dReq > 0 {
			perReq = fmt.Sprintf("  allocs/req %.1f", (sm.m[mMallocs]-prev.m[mMallocs])/dReq)
		}
	}
	logf("VmRSS %7.1f MiB  process_resident %7.1f MiB  heap_inuse %7.1f MiB  goroutines %4.0f  clients %3.0f%s%s%s",
		mib(sm.vmRSS), mib(sm.m[mRSS]), mib(sm.m[mHeap]), sm.m[mGoro], sm.m[mClients], rate, perReq, labelSuffix(label))
	for _, b := range sm.busy {
		logf("  SLOW: %s", b)
	}
	if s.csv != nil {
		fmt.Fprintf(s.csv, "%.1f,%s,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%d,%d\n", sm.at.Seconds(), label, sm.vmRSS, sm.m[mRSS],
			sm.m[mHeap], sm.m[mGoro], sm.m[mCommands], sm.m[mMallocs], sm.ops, sm.errs)
	}
	return sm
}

func labelSuffix(label string) string {
	if label == "" {
		return ""
	}
	return "  (" + label + ")"
}

// all returns the samples taken so far that read the proxy.
func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok []sample
	for _, sm := range s.samples {
		if sm.err == nil {
			ok = append(ok, sm)
		}
	}
	return ok
}

func (s *sampler) failures() (n int, rssGone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sm := range s.samples {
		if sm.err != nil {
			n++
			rssGone = rssGone || sm.rssFailure
		}
	}
	return n, rssGone
}
