// Command soak is the load of bench/soak.sh: plain go-redis clients (one connection each, no retries) through
// the proxy for minutes, values up to a megabyte, one failover in the middle, the proxy's memory sampled all
// along, and every write checked. bench/soak.sh starts the cluster and the proxy and runs it; by hand:
//
//	go run ./bench/soak -addr 127.0.0.1:7110 -metrics 127.0.0.1:7111 -pid PROXY_PID \
//	    -seeds 127.0.0.1:7100 -cluster-dir DIR -duration 2m -- deploy/cluster.sh start --dir DIR ...
//
// Each client owns its keys, so what it last wrote is what every read must return: GET and MGET replies and
// every INCR reply are checked as they arrive, and every key is read back at the end. A write that failed
// has an unknown outcome: the old and the new value both count as right until a read settles it. Lost
// writes are acknowledged writes that did not read back; those on the failed-over shard are counted apart,
// since a SIGKILLed master can lose acknowledged writes that had not reached its replica yet.
//
// Failover (-failover kill, the default): at half time the master of slot 0 gets SIGKILL (its pid from
// deploy/cluster.sh's pidfile DIR/PORT/redis.pid, checked against the process title, which names the port);
// once its replica is master, and -restart-after later, the command after "--" restarts it (deploy/cluster.sh
// start, which waits until every node is ok) and it must come back as the new master's replica.
// -failover manual runs CLUSTER FAILOVER on the replica instead; none skips it.
//
// SIGUSR1 (bench/soak.sh sends it on the first ^C), or ^C when run in the foreground, ends the load early; the
// read-back and the report still run.
//
// Exit status 1 if data went wrong outside the failed-over shard (lost or wrong values, counters applied
// twice), the read-back failed, the proxy could not be read, or a failover step failed; errors alone do not
// fail the run, they are counted by kind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	addr, metricsAddr string
	pid               int
	seeds             []string
	clusterDir        string
	clients, keys     int
	duration          time.Duration
	maxValue          int
	small             int
	largePct          int
	opTimeout         time.Duration
	failover          string
	restartAfter      time.Duration
	restartCmd        []string
	restartLog        string
	every             time.Duration
	out, report, csv  string
	header            string
}

var (
	out   io.Writer = os.Stdout
	outMu sync.Mutex
	t0    time.Time
)

// logf prints a line stamped with the time since the load started.
func logf(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	stamp := "  setup"
	if !t0.IsZero() {
		stamp = fmt.Sprintf("%6.1fs", time.Since(t0).Seconds())
	}
	fmt.Fprintf(out, "[%s] %s\n", stamp, fmt.Sprintf(format, args...))
}

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func parseFlags() (*config, error) {
	cfg := &config{}
	var seeds string
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:7110", "the proxy's client address")
	flag.StringVar(&cfg.metricsAddr, "metrics", "127.0.0.1:7111", "the proxy's metrics address (host:port)")
	flag.IntVar(&cfg.pid, "pid", 0, "the proxy's pid (VmRSS from /proc/PID/status)")
	flag.StringVar(&seeds, "seeds", "127.0.0.1:7100", "cluster nodes, comma-separated (to pick the master to fail over)")
	flag.StringVar(&cfg.clusterDir, "cluster-dir", "", "deploy/cluster.sh's --dir (pidfiles PORT/redis.pid)")
	flag.IntVar(&cfg.clients, "clients", 50, "concurrent clients, one connection each")
	flag.IntVar(&cfg.keys, "keys", 32, "keys per client (at least 4)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Minute, "how long the load runs")
	flag.IntVar(&cfg.maxValue, "max-value", 1<<20, "largest value in bytes")
	flag.IntVar(&cfg.small, "small", 64, "largest small value in bytes")
	flag.IntVar(&cfg.largePct, "large-pct", 50, "percent of values with a size uniform in 0..max-value; the rest are 0..small bytes")
	flag.DurationVar(&cfg.opTimeout, "op-timeout", 30*time.Second, "client read and write timeout of one request")
	flag.StringVar(&cfg.failover, "failover", "kill", "kill (SIGKILL a master, restart it later), manual (CLUSTER FAILOVER) or none")
	flag.DurationVar(&cfg.restartAfter, "restart-after", 10*time.Second, "how long the killed master stays down after its replica's promotion")
	flag.StringVar(&cfg.restartLog, "restart-log", "", "file for the restart command's output")
	flag.DurationVar(&cfg.every, "every", 10*time.Second, "interval of the memory samples")
	flag.StringVar(&cfg.out, "out", "", "file that gets a copy of everything printed")
	flag.StringVar(&cfg.report, "report", "", "file for the final report")
	flag.StringVar(&cfg.csv, "csv", "", "file for the samples as CSV")
	flag.StringVar(&cfg.header, "header", "", "lines that head the report (what runs where)")
	flag.Parse()
	cfg.seeds = strings.Split(seeds, ",")
	cfg.restartCmd = flag.Args()
	switch {
	case cfg.pid <= 0:
		return nil, errors.New("-pid is required")
	case cfg.clients < 1, cfg.keys < 4:
		return nil, errors.New("-clients must be at least 1 and -keys at least 4")
	case cfg.maxValue < 0, cfg.small < 0, cfg.largePct < 0, cfg.largePct > 100:
		return nil, errors.New("-max-value and -small must be >= 0, -large-pct within 0..100")
	case cfg.duration <= 0 || cfg.every <= 0:
		return nil, errors.New("-duration and -every must be positive")
	case cfg.failover != "kill" && cfg.failover != "manual" && cfg.failover != "none":
		return nil, fmt.Errorf("-failover %q: want kill, manual or none", cfg.failover)
	case cfg.failover == "kill" && cfg.clusterDir == "":
		return nil, errors.New("-failover kill needs -cluster-dir")
	}
	return cfg, nil
}

func run() (int, error) {
	cfg, err := parseFlags()
	if err != nil {
		return 0, err
	}
	if cfg.out != "" {
		f, err := os.Create(cfg.out)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		out = io.MultiWriter(os.Stdout, f)
	}
	smp := &sampler{cfg: cfg}
	if cfg.csv != "" {
		f, err := os.Create(cfg.csv)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		fmt.Fprintln(f, "t_s,label,vmrss_bytes,process_resident_bytes,heap_inuse_bytes,goroutines,proxy_commands,proxy_mallocs,client_requests,client_errors")
		smp.csv = f
	}
	if _, err := vmRSS(cfg.pid); err != nil {
		return 0, fmt.Errorf("the proxy's pid %d: %v", cfg.pid, err)
	}
	if _, err := scrape(cfg.metricsAddr); err != nil {
		return 0, fmt.Errorf("the proxy's metrics at %s: %v", cfg.metricsAddr, err)
	}

	// SIGUSR1 (bench/soak.sh sends it on the first ^C) or, when run in the foreground, the first ^C ends the
	// load early; the read-back and the report still run. A second one exits at once.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1)
	if !signal.Ignored(syscall.SIGINT) { // a background job of a script ignores ^C: the script forwards it
		signal.Notify(sigs, syscall.SIGINT)
	}
	go func() {
		<-sigs
		interrupted.Store(true)
		logf("interrupted: stopping the load, then reading back and reporting (again to abort)")
		cancel()
		<-sigs
		os.Exit(130)
	}()

	vals := newValues(cfg.maxValue, cfg.small, cfg.largePct)
	prefix := "soak" + strconv.FormatInt(time.Now().Unix(), 36)
	ws := make([]*worker, cfg.clients)
	for i := range ws {
		ws[i] = newWorker(i, cfg, vals, prefix)
		if err := ws[i].c.Ping(context.Background()).Err(); err != nil {
			return 0, fmt.Errorf("client %d: PING %s: %v", i, cfg.addr, err)
		}
	}
	smp.ws = ws
	when := map[bool]string{true: "", false: " at half time"}[cfg.failover == "none"]
	logf("%d clients x %d keys through %s for %v; values: %d%% of sizes uniform in 0..%d B, the rest 0..%d B; failover: %s%s",
		cfg.clients, cfg.keys, cfg.addr, cfg.duration, cfg.largePct, cfg.maxValue, cfg.small, cfg.failover, when)
	smp.take("idle, before the load")

	t0 = time.Now()
	smp.t0 = t0
	first := smp.take("start")
	var wg sync.WaitGroup
	for _, w := range ws {
		w.t0 = t0
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		tick := time.NewTicker(cfg.every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				smp.take("")
			case <-stopSampling:
				return
			}
		}
	}()
	fo := &failover{mode: "none"}
	foDone := make(chan struct{})
	var middle sample
	go func() {
		defer close(foDone)
		select {
		case <-time.After(cfg.duration / 2):
		case <-ctx.Done():
			return
		}
		middle = smp.take("middle" + map[bool]string{true: "", false: ", before the failover"}[cfg.failover == "none"])
		if cfg.failover != "none" {
			fo.run(cfg, t0)
		}
	}()

	<-ctx.Done()
	wg.Wait()
	loadTime := time.Since(t0)
	last := smp.take("end of the load")
	close(stopSampling)
	<-samplingDone
	select {
	case <-foDone:
	default:
		logf("waiting for the failover to finish")
		<-foDone
	}

	logf("reading back %d keys and %d counters", cfg.clients*cfg.keys, cfg.clients)
	var readErrs []string
	var mu sync.Mutex
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs := w.readBack()
			mu.Lock()
			readErrs = append(readErrs, errs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, w := range ws {
		w.c.Close()
	}

	rep := &report{cfg: cfg, ws: ws, fo: fo, smp: smp, first: first, middle: middle, last: last,
		loadTime: loadTime, readErrs: readErrs, interrupted: interrupted.Load()}
	text, bad := rep.build()
	outMu.Lock()
	fmt.Fprint(out, "\n"+text)
	outMu.Unlock()
	if cfg.report != "" {
		if err := os.WriteFile(cfg.report, []byte(text), 0o644); err != nil {
			return 1, err
		}
	}
	if bad {
		return 1, nil
	}
	return 0, nil
}

type report struct {
	cfg                 *config
	ws                  []*worker
	fo                  *failover
	smp                 *sampler
	first, middle, last sample
	loadTime            time.Duration
	readErrs            []string
	interrupted         bool
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

func ms(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
}

// build writes the report and says whether the run found a problem.
func (r *report) build() (string, bool) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	var problems []string
	cfg, fo := r.cfg, r.fo

	st := stats{errs: map[string]*errKind{}}
	var lost, incrLost []lostWrite
	var overcount int64
	delMismatch := 0
	for _, w := range r.ws {
		st.merge(&w.st)
		lost = append(lost, w.lost...)
		incrLost = append(incrLost, w.lostIncrs...)
		overcount += w.overcount
		delMismatch += w.delMismatch
	}

	p("==== soak report ====")
	if cfg.header != "" {
		p("%s", strings.TrimRight(cfg.header, "\n"))
	}
	p("load: %d clients x %d keys (plain go-redis, 1 connection each, no retries, %v timeout) for %v%s; values: %d%% uniform 0..%d B, the rest 0..%d B",
		cfg.clients, cfg.keys, cfg.opTimeout, r.loadTime.Round(100*time.Millisecond),
		map[bool]string{true: " (INTERRUPTED)", false: ""}[r.interrupted], cfg.largePct, cfg.maxValue, cfg.small)
	p("mix: SET 28%%, GET 28%%, INCR 10%%, MGET 12%% (2-4 keys, several slots), MSET 10%% (2-4 keys), DEL 12%% (1-3 keys)")

	// Failover.
	switch {
	case fo.victim == "" && len(fo.problems) == 0 && cfg.failover == "none":
		p("failover: none (-failover none)")
	case fo.victim == "" && len(fo.problems) == 0:
		p("failover: none (the load ended before half time)")
	default:
		p("failover: %s of the master of slots %s (%s, replica %s)", fo.mode, fo.ranges, fo.victim, fo.replica)
		for _, e := range fo.events {
			p("  %s", e)
		}
	}
	for _, pr := range fo.problems {
		problems = append(problems, "failover: "+pr)
	}

	// Requests.
	var total, errs int64
	for _, c := range st.cmd {
		total += c.ops
		errs += c.errs
	}
	secs := r.loadTime.Seconds()
	proxyReq := r.last.m[mCommands] - r.first.m[mCommands]
	p("")
	p("requests: %s in %.0fs = %.0f/s (client side); the proxy's slotproxy_commands_total grew by %s (%.0f/s)",
		commas(total), secs, float64(total)/secs, commas(int64(proxyReq)), proxyReq/secs)
	p("  %-5s %10s %7s %9s %9s %9s %10s %12s", "cmd", "requests", "errors", "p50", "p99", "max", "max at B", "MiB moved")
	for i, c := range st.cmd {
		if c.ops == 0 {
			continue
		}
		p("  %-5s %10s %7s %9s %9s %9s %10s %12.1f", cmdNames[i], commas(c.ops), commas(c.errs), ms(c.lat.quantile(0.5)),
			ms(c.lat.quantile(0.99)), ms(c.max), commas(int64(c.maxSize)), mib(float64(c.bytes)))
	}
	p("  by phase (of the request's start; those in flight when the failover began count before it):")
	for i, ph := range st.phase {
		if ph.ops == 0 {
			continue
		}
		p("    %-38s %10s requests %6s errors, max %s", phaseNames[i], commas(ph.ops), commas(ph.errs), ms(ph.max))
	}

	// Errors.
	p("")
	if errs == 0 {
		p("errors: none")
	} else {
		p("errors: %s (%.3f%% of requests), by kind:", commas(errs), 100*float64(errs)/float64(max(total, 1)))
		kinds := make([]string, 0, len(st.errs))
		for k := range st.errs {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool { return st.errs[kinds[i]].n > st.errs[kinds[j]].n })
		for _, k := range kinds {
			p("  %6s  %s", commas(st.errs[k].n), k)
			for _, s := range st.errs[k].samples {
				p("            e.g. %s", s)
			}
		}
	}
	if len(st.slow) > 0 {
		p("requests slower than %v: %d shown, slowest first:", slowThreshold, min(len(st.slow), 10))
		for _, s := range st.slow[:min(len(st.slow), 10)] {
			e := ""
			if s.err != "" {
				e = " -> " + s.err
			}
			p("  %s of %s B at %.1fs took %s%s", s.cmd, commas(int64(s.size)), s.at.Seconds(), ms(s.lat), e)
		}
	}

	// Lost writes.
	p("")
	type key struct {
		killed   bool
		class    string
		readback bool
	}
	counts := map[key]int{}
	var killedN, otherN int
	for _, l := range append(append([]lostWrite(nil), lost...), incrLost...) {
		k := key{fo.haveSlots && fo.slots[l.slot], l.class, l.readback}
		counts[k]++
		if k.killed {
			killedN++
		} else {
			otherN++
		}
	}
	shard := "the failed-over shard"
	if fo.ranges != "" {
		shard += " (slots " + fo.ranges + ")"
	}
	p("lost writes (acknowledged writes that did not read back, counters below acknowledged INCRs):")
	p("  on %s: %d", shard, killedN)
	p("  on the other shards: %d", otherN)
	if len(counts) > 0 {
		ks := make([]key, 0, len(counts))
		for k := range counts {
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool { return fmt.Sprint(ks[i]) < fmt.Sprint(ks[j]) })
		for _, k := range ks {
			where := map[bool]string{true: "failed-over shard", false: "other shards"}[k.killed]
			when := map[bool]string{true: "at the read-back", false: "by a read during the run"}[k.readback]
			p("    %4d %-15s on the %s, found %s", counts[k], k.class, where, when)
		}
		all := append(append([]lostWrite(nil), lost...), incrLost...)
		sort.Slice(all, func(i, j int) bool { return all[i].at < all[j].at })
		for _, l := range all[:min(len(all), 8)] {
			p("    e.g. %s (slot %d) at %.1fs: want %s, got %s", l.key, l.slot, l.at.Seconds(), l.want, l.got)
		}
	}
	if otherN > 0 {
		problems = append(problems, fmt.Sprintf("%d lost writes on shards that were not failed over", otherN))
	}
	for _, l := range lost {
		if l.class == "wrong value" {
			problems = append(problems, "values that were never written came back (wrong value)")
			break
		}
	}
	if overcount > 0 {
		p("  counters above all INCRs sent (an INCR applied twice): %d", overcount)
		problems = append(problems, fmt.Sprintf("counters %d above the INCRs sent", overcount))
	}
	if delMismatch > 0 {
		p("  (DEL counts that disagreed with the keys' known state are among them: %d)", delMismatch)
	}
	if len(r.readErrs) > 0 {
		p("read-back errors: %d, e.g. %s", len(r.readErrs), r.readErrs[0])
		problems = append(problems, fmt.Sprintf("%d read-back errors", len(r.readErrs)))
	}

	// Memory.
	p("")
	samples := r.smp.all()
	var xs, ys []float64
	peak := 0.0
	for _, s := range samples {
		peak = max(peak, s.vmRSS)
		if s.at >= r.loadTime/2 && s.at <= r.loadTime {
			xs = append(xs, s.at.Minutes())
			ys = append(ys, mib(s.vmRSS))
		}
	}
	p("proxy memory (VmRSS / process_resident_memory_bytes / go heap in use), %d samples every %v:", len(samples), cfg.every)
	for _, s := range []struct {
		name string
		s    sample
	}{{"start", r.first}, {"middle", r.middle}, {"end", r.last}} {
		if s.s.m == nil {
			p("  %-7s (no sample)", s.name)
			continue
		}
		p("  %-7s %6.1fs  %7.1f / %7.1f / %7.1f MiB", s.name, s.s.at.Seconds(), mib(s.s.vmRSS), mib(s.s.m[mRSS]), mib(s.s.m[mHeap]))
	}
	p("  peak VmRSS %.1f MiB", mib(peak))
	if len(xs) >= 3 {
		k, se := slope(xs, ys)
		mean := 0.0
		for _, y := range ys {
			mean += y
		}
		mean /= float64(len(ys))
		p("  trend of VmRSS over the last half (%d samples, least squares): %+.2f ± %.2f MiB/min (slope ± standard error;"+
			" %+.1f%% of its mean %.1f MiB per 10 min)", len(xs), k, se, 100*k*10/mean, mean)
		verdict := "no growth trend: the slope is within two standard errors of zero"
		switch {
		case math.Abs(k) > 2*se && k > 0:
			verdict = "RSS GROWS: the slope is more than two standard errors above zero"
		case math.Abs(k) > 2*se:
			verdict = "RSS falls: the slope is more than two standard errors below zero"
		}
		p("  %s", verdict)
	} else {
		p("  trend: too few samples in the last half (%d); run longer", len(xs))
	}
	if n, gone := r.smp.failures(); n > 0 {
		p("  %d samples could not read the proxy", n)
		if gone {
			problems = append(problems, "the proxy process was gone during the run")
		} else {
			problems = append(problems, fmt.Sprintf("%d metrics scrapes failed", n))
		}
	}

	// Allocations.
	if r.first.m != nil && r.last.m != nil && proxyReq > 0 {
		dm := r.last.m[mMallocs] - r.first.m[mMallocs]
		db := r.last.m[mAllocB] - r.first.m[mAllocB]
		var moved int64
		for _, c := range st.cmd {
			moved += c.bytes
		}
		p("allocations: go_memstats_mallocs_total +%s over %s proxy requests = %.2f allocs/request; %s B allocated/request"+
			" (go_memstats_alloc_bytes_total) for %s B of values written or read per request",
			commas(int64(dm)), commas(int64(proxyReq)), dm/proxyReq, commas(int64(db/proxyReq)), commas(moved/max(total, 1)))
		// The second half alone, away from start-up.
		if r.middle.m != nil {
			dr := r.last.m[mCommands] - r.middle.m[mCommands]
			if dr > 0 {
				p("  second half alone: %.2f allocs/request", (r.last.m[mMallocs]-r.middle.m[mMallocs])/dr)
			}
		}
		p("  backend_failed_total (requests the proxy answered with its own error): +%.0f",
			r.last.m[mFailed]-r.first.m[mFailed])
	}

	p("")
	if len(problems) == 0 {
		p("verdict: no data problems found (errors and lost writes on the failed-over shard are listed above)")
	} else {
		p("verdict: PROBLEMS:")
		for _, pr := range problems {
			p("  - %s", pr)
		}
	}
	return b.String(), len(problems) > 0
}
