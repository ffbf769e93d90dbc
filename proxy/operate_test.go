package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// This file tests the README's "Running it" and "Operating the cluster behind the proxy" claims that no other
// test covers: the metrics and health endpoints, flags over the file, start-up errors, LOADING, and a whole
// shard lost under cluster-require-full-coverage yes.

// binProc is the proxy binary running with arguments of the test's choosing.
type binProc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	log     string
	cfgPath string
}

// runBinary writes yaml to a fresh proxy.yaml and runs the proxy binary with -config <it> and args. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func runBinary(t *testing.T, yaml string, args ...string) *binProc {
	t.Helper()
	bin := proxyBinary(t)
	dir := t.TempDir()
	p := &binProc{done: make(chan struct{}), log: filepath.Join(dir, "proxy.log"), cfgPath: filepath.Join(dir, "proxy.yaml")}
	if err := os.WriteFile(p.cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"-config", p.cfgPath}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		checkProcessLog(t, p.Log())
	})
	return p
}

func (p *binProc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *binProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond every 20 ms until it returns nil, failing the test with its last error (and the proxy's
// log) after timeout or as soon as the proxy exits.
func (p *binProc) waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s: the proxy exited (%v):\n%s", what, err, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v\nproxy log:\n%s", what, timeout, err, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitServes waits until a SET through addr answers +OK: the proxy listens there and has a slot map from
// a cluster that answers.
func (p *binProc) waitServes(t *testing.T, addr string) {
	t.Helper()
	p.waitFor(t, 20*time.Second, "the proxy serves on "+addr, func() error {
		got, _, err := rawDo(addr, 2*time.Second, "SET", "operate:ready", "1")
		if err != nil {
			return err
		}
		if string(got) != "+OK\r\n" {
			return fmt.Errorf("SET answered %q", got)
		}
		return nil
	})
}

// rawDo sends one command on a new connection and returns the whole reply and how long it took from the
// write. It calls no testing function, so goroutines may use it.
func rawDo(addr string, timeout time.Duration, args ...string) ([]byte, time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if _, err := c.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		return nil, 0, err
	}
	r := bufio.NewReader(c)
	var sc resp.ReplyScanner
	var buf []byte
	for {
		if len(buf) > 0 {
			n, err := sc.Scan(buf)
			if err != nil {
				return buf, 0, err
			}
			if n > 0 {
				return buf[:n], time.Since(start), nil
			}
		}
		b, err := r.ReadByte()
		if err != nil {
			return buf, time.Since(start), err
		}
		buf = append(buf, b)
	}
}

// refused reports whether nothing listens on addr (the dial is refused).
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func httpGet(url string) (code int, body, contentType string, err error) {
	cl := &http.Client{Timeout: 5 * time.Second}
	res, err := cl.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header.Get("Content-Type"), err
}

// expectHTTP checks one GET's status and body exactly.
func expectHTTP(t *testing.T, url string, code int, body string) {
	t.Helper()
	gotCode, gotBody, _, err := httpGet(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if gotCode != code || gotBody != body {
		t.Errorf("GET %s: %d %q, want %d %q", url, gotCode, gotBody, code, body)
	}
}

// scrape is one /metrics page in the Prometheus text format: the TYPE of each family, and the value of
// each sample, by its name and labels as written (`slotproxy_peers{state="alive"}`).
type scrape struct {
	types  map[string]string
	values map[string]float64
}

func getMetrics(t *testing.T, base string) scrape {
	t.Helper()
	code, body, ctype, err := httpGet(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d, Content-Type %q; want 200 and the Prometheus text format", code, ctype)
	}
	s := scrape{types: map[string]string{}, values: map[string]float64{}}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("/metrics: bad sample line %q", line)
		}
		s.values[f[0]] = v
	}
	return s
}

func (s scrape) get(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := s.values[name]
	if !ok {
		t.Fatalf("/metrics has no sample %s", name)
	}
	return v
}

// proxyFamilies are the families proxy/metrics.go registers, with their types.
var proxyFamilies = map[string]string{
	"slotproxy_client_connections":             "gauge",
	"slotproxy_client_connections_total":       "counter",
	"slotproxy_limit_rejections_total":         "counter",
	"slotproxy_commands_total":                 "counter",
	"slotproxy_protocol_errors_total":          "counter",
	"slotproxy_client_idle_closed_total":       "counter",
	"slotproxy_backend_moved_total":            "counter",
	"slotproxy_backend_ask_total":              "counter",
	"slotproxy_backend_retries_total":          "counter",
	"slotproxy_backend_failed_total":           "counter",
	"slotproxy_backend_connections_lost_total": "counter",
	"slotproxy_backend_dial_errors_total":      "counter",
	"slotproxy_slot_map_version":               "gauge",
	// metrics.NewRegistry's Go and process collectors
	"go_goroutines":                 "gauge",
	"process_resident_memory_bytes": "gauge",
}

func addrOf(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// TestMetricsEndpoints: the binary with -metrics serves /healthz (200 "ok\n"), /readyz (200 "ok\n" with a
// slot map), and /metrics in the Prometheus text format with every family of proxy/metrics.go, whose values
// are exact: client_connections is the number of connections held open (5, then 6, then 4 after closing 2),
// client_connections_total grows by the 6 accepted, limit_rejections_total{limit="max_clients"} by the 1
// refused, commands_total by exactly the 55 commands sent (local, forwarded, and cross-slot MGETs split in
// three count once each), backend_failed_total by 0.
func TestMetricsEndpoints(t *testing.T) {
	_, _, cl := shared(t)
	listen, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	base := "http://" + metricsAddr
	p := runBinary(t, "max_clients: 6\nevent_loops: 2\n",
		"-listen", listen, "-seeds", strings.Join(cl.Addrs(), ","), "-metrics", metricsAddr)
	p.waitServes(t, listen)

	expectHTTP(t, base+"/healthz", http.StatusOK, "ok\n")
	expectHTTP(t, base+"/readyz", http.StatusOK, "ok\n")

	m := getMetrics(t, base)
	var missing []string
	for name, typ := range proxyFamilies {
		if got := m.types[name]; got != typ {
			missing = append(missing, fmt.Sprintf("%s: TYPE %q, want %q", name, got, typ))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("/metrics families:\n%s", strings.Join(missing, "\n"))
	}
	if v := m.get(t, "slotproxy_slot_map_version"); v < 1 {
		t.Errorf("slot_map_version = %v with a slot map, want >= 1", v)
	}

	// The start-up probes' connections are gone once the gauge reads 0.
	p.waitFor(t, 5*time.Second, "client_connections back to 0", func() error {
		if v := getMetrics(t, base).get(t, "slotproxy_client_connections"); v != 0 {
			return fmt.Errorf("client_connections = %v", v)
		}
		return nil
	})
	before := getMetrics(t, base)
	delta := func(now scrape, name string) float64 { return now.get(t, name) - before.get(t, name) }

	const held = 5
	conns := make([]*rawConn, held)
	commands := 0
	for i := range conns {
		conns[i] = dialRaw(t, listen)
		if got := string(conns[i].do("PING")); got != "+PONG\r\n" { // answered by the proxy
			t.Fatalf("PING: %q", got)
		}
		commands++
	}
	now := getMetrics(t, base)
	if v := now.get(t, "slotproxy_client_connections"); v != held {
		t.Errorf("client_connections = %v with %d connections open, want %d", v, held, held)
	}
	if d := delta(now, "slotproxy_client_connections_total"); d != held {
		t.Errorf("client_connections_total grew by %v after %d connections, want %d", d, held, held)
	}

	for i := range 20 {
		c := conns[i%held]
		k := fmt.Sprintf("operate:metrics:%d", i)
		if got := string(c.do("SET", k, "v")); got != "+OK\r\n" {
			t.Fatalf("SET %s: %q", k, got)
		}
		if got, want := string(c.do("GET", k)), "$1\r\nv\r\n"; got != want {
			t.Fatalf("GET %s: %q, want %q", k, got, want)
		}
		commands += 2
	}
	// Three keys in three shards: one client command, three backend requests.
	k0, k1, k2 := keyInRange("operate:m:", 0, 5460), keyInRange("operate:m:", 5461, 10922), keyInRange("operate:m:", 10923, 16383)
	for i := range held {
		got := string(conns[i].do("MGET", k0, k1, k2))
		if want := "*3\r\n$-1\r\n$-1\r\n$-1\r\n"; got != want {
			t.Fatalf("MGET: %q, want %q", got, want)
		}
		if got := string(conns[i].do("ECHO", "x")); got != "$1\r\nx\r\n" {
			t.Fatalf("ECHO: %q", got)
		}
		commands += 2
	}
	now = getMetrics(t, base)
	if d := delta(now, "slotproxy_commands_total"); d != float64(commands) {
		t.Errorf("commands_total grew by %v after %d commands, want exactly %d", d, commands, commands)
	}

	// max_clients 6: a sixth connection is accepted, a seventh refused with Redis's text and counted.
	sixth := dialRaw(t, listen)
	if got := string(sixth.do("PING")); got != "+PONG\r\n" {
		t.Fatalf("sixth connection PING: %q", got)
	}
	seventh := dialRaw(t, listen)
	if got, want := string(seventh.reply()), "-ERR max number of clients reached\r\n"; got != want {
		t.Errorf("seventh connection at max_clients 6: %q, want %q", got, want)
	}
	if !seventh.closed() {
		t.Error("the refused connection was not closed")
	}
	now = getMetrics(t, base)
	if v := now.get(t, "slotproxy_client_connections"); v != held+1 {
		t.Errorf("client_connections = %v with %d open (one refused), want %d", v, held+1, held+1)
	}
	if d := delta(now, `slotproxy_limit_rejections_total{limit="max_clients"}`); d != 1 {
		t.Errorf("limit_rejections_total{limit=max_clients} grew by %v, want 1", d)
	}
	if d := delta(now, "slotproxy_client_connections_total"); d != held+1 {
		t.Errorf("client_connections_total grew by %v, want %d (the refused one is not accepted)", d, held+1)
	}
	if d := delta(now, "slotproxy_backend_failed_total"); d != 0 {
		t.Errorf("backend_failed_total grew by %v, want 0", d)
	}

	conns[0].c.Close()
	conns[1].c.Close()
	p.waitFor(t, 5*time.Second, "client_connections after closing 2", func() error {
		if v := getMetrics(t, base).get(t, "slotproxy_client_connections"); v != held-1 {
			return fmt.Errorf("client_connections = %v, want %d", v, held-1)
		}
		return nil
	})
}

// TestReadyzBeforeSlotMap: with seeds where nothing listens the binary is alive (/healthz 200 "ok\n") but not
// ready: /readyz answers 503 "no slot map yet\n", slot_map_version is 0 and a command gets Redis's
// "-CLUSTERDOWN The cluster is down" at once. Once a cluster node covering every slot listens on the seed
// address, /readyz answers 200 "ok\n" within 5 s (refresh_interval 100ms) and commands are served.
func TestReadyzBeforeSlotMap(t *testing.T) {
	seedPort := redistest.FreePort(t)
	listen, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	base := "http://" + metricsAddr
	p := runBinary(t, "refresh_interval: 100ms\n",
		"-listen", listen, "-seeds", addrOf(seedPort), "-metrics", metricsAddr)
	p.waitFor(t, 20*time.Second, "/healthz answers", func() error {
		code, body, _, err := httpGet(base + "/healthz")
		if err == nil && (code != http.StatusOK || body != "ok\n") {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})
	expectHTTP(t, base+"/readyz", http.StatusServiceUnavailable, "no slot map yet\n")
	if v := getMetrics(t, base).get(t, "slotproxy_slot_map_version"); v != 0 {
		t.Errorf("slot_map_version = %v before any map, want 0", v)
	}
	got, took, err := rawDo(listen, 5*time.Second, "GET", "operate:nomap")
	if err != nil {
		t.Fatalf("GET before a slot map: %v", err)
	}
	if want := "-CLUSTERDOWN The cluster is down\r\n"; string(got) != want {
		t.Errorf("GET before a slot map: %q, want %q", got, want)
	}
	if took > time.Second {
		t.Errorf("GET before a slot map took %v, want an answer at once (< 1s)", took)
	}
	expectHTTP(t, base+"/readyz", http.StatusServiceUnavailable, "no slot map yet\n")

	// A one-node cluster with every slot appears on the seed address.
	node := redistest.StartServerOnPort(t, seedPort, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(redistest.FreePort(t)))
	if _, err := node.Do("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, "the node says cluster_state:ok", func() error {
		info, err := node.DoString("CLUSTER", "INFO")
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = errors.New("cluster_state is not ok")
		}
		return err
	})
	start := time.Now()
	p.waitFor(t, 5*time.Second, "/readyz 200 once the seed answers", func() error {
		code, body, _, err := httpGet(base + "/readyz")
		if err == nil && (code != http.StatusOK || body != "ok\n") {
			err = fmt.Errorf("%d %q", code, body)
		}
		return err
	})
	t.Logf("/readyz 200 %v after the node said cluster_state:ok", time.Since(start))
	if v := getMetrics(t, base).get(t, "slotproxy_slot_map_version"); v < 1 {
		t.Errorf("slot_map_version = %v once ready, want >= 1", v)
	}
	if got, _, err := rawDo(listen, 5*time.Second, "SET", "operate:nomap", "now"); err != nil || string(got) != "+OK\r\n" {
		t.Errorf("SET once ready: %q %v, want +OK", got, err)
	}
	if got, _, err := rawDo(node.Addr, 5*time.Second, "GET", "operate:nomap"); err != nil || string(got) != "$3\r\nnow\r\n" {
		t.Errorf("GET on the node itself: %q %v, want the value written through the proxy", got, err)
	}
}

// TestFlagsOverrideFile: README "Flags override the file". proxy.yaml sets listen, seeds and metrics; each of
// -listen, -seeds and -metrics, alone and together, replaces its key and only its key. A file whose seeds are
// dead serves only if -seeds replaced them; an address that should not be used is refused; -metrics off turns
// the file's metrics off; -seeds with dead seeds replaces good ones (the proxy never becomes ready).
func TestFlagsOverrideFile(t *testing.T) {
	_, _, cl := shared(t)
	real := strings.Join(cl.Addrs(), ",")
	for _, tc := range []struct {
		name        string
		fileSeedsOK bool // the file's seeds are the real cluster (else a dead port)
		listen      bool // pass -listen B
		seeds       string
		metrics     string // "" none, "D" a new address, "off"
		ready       bool
	}{
		{name: "no flags", fileSeedsOK: true, ready: true},
		{name: "all three", listen: true, seeds: "real", metrics: "D", ready: true},
		{name: "-listen alone", fileSeedsOK: true, listen: true, ready: true},
		{name: "-seeds alone", seeds: "real", ready: true},
		{name: "-metrics alone", fileSeedsOK: true, metrics: "D", ready: true},
		{name: "-metrics off", fileSeedsOK: true, metrics: "off", ready: true},
		{name: "-seeds dead over good file seeds", fileSeedsOK: true, seeds: "dead", metrics: "D"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
			am, d := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
			dead := addrOf(redistest.FreePort(t))
			fileSeeds := dead
			if tc.fileSeedsOK {
				fileSeeds = real
			}
			yaml := fmt.Sprintf("listen: %s\nmetrics: %s\nseeds: [%s]\nevent_loops: 1\n", a, am, fileSeeds)
			var args []string
			wantListen, wantMetrics := a, am
			notListen, notMetrics := b, d
			if tc.listen {
				args = append(args, "-listen", b)
				wantListen, notListen = b, a
			}
			switch tc.seeds {
			case "real":
				args = append(args, "-seeds", real)
			case "dead":
				args = append(args, "-seeds", dead)
			}
			switch tc.metrics {
			case "D":
				args = append(args, "-metrics", d)
				wantMetrics, notMetrics = d, am
			case "off":
				args = append(args, "-metrics", "off")
				wantMetrics, notMetrics = "", am
			}
			p := runBinary(t, yaml, args...)
			if tc.ready {
				p.waitServes(t, wantListen) // with dead seeds in the file, only -seeds makes this pass
			} else {
				p.waitFor(t, 20*time.Second, "the proxy listens on "+wantListen, func() error {
					got, _, err := rawDo(wantListen, 2*time.Second, "PING")
					if err == nil && string(got) != "+PONG\r\n" {
						err = fmt.Errorf("PING: %q", got)
					}
					return err
				})
			}
			if wantMetrics != "" {
				expectHTTP(t, "http://"+wantMetrics+"/healthz", http.StatusOK, "ok\n")
			}
			if !refused(notListen) {
				t.Errorf("something listens on %s, the listen address that should not be used", notListen)
			}
			if !refused(notMetrics) {
				t.Errorf("something listens on %s, the metrics address that should not be used", notMetrics)
			}
			if !tc.ready {
				// The file's seeds would give a map within a few hundred ms; the flag's dead ones never do.
				deadline := time.Now().Add(2 * time.Second)
				for time.Now().Before(deadline) {
					code, body, _, err := httpGet("http://" + wantMetrics + "/readyz")
					if err != nil || code != http.StatusServiceUnavailable {
						t.Fatalf("/readyz with dead -seeds: %d %q %v, want 503 (the file's good seeds were used)", code, body, err)
					}
					time.Sleep(100 * time.Millisecond)
				}
				got, _, err := rawDo(wantListen, 5*time.Second, "GET", "operate:flags")
				if want := "-CLUSTERDOWN The cluster is down\r\n"; err != nil || string(got) != want {
					t.Errorf("GET with dead -seeds: %q %v, want %q", got, err, want)
				}
			}
		})
	}
}

// TestBadConfigStopsStartup: README "Unknown keys and bad values stop start-up with a message naming the
// key". Each case exits with status 1 within 10 s, without listening, and prints exactly the message given.
func TestBadConfigStopsStartup(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		args []string
		want func(cfg string) string // the whole output
	}{
		{name: "unknown key", yaml: "event_loops: 1\nlisten_addr: 127.0.0.1:1\n",
			want: func(cfg string) string {
				return "slotproxy: " + cfg + ": listen_addr: line 2: unknown key\n"
			}},
		{name: "unknown nested key", yaml: "retry:\n  backoff_min: 1ms\n  backof_max: 1s\n",
			want: func(cfg string) string {
				return "slotproxy: " + cfg + ": retry.backof_max: line 3: unknown key\n"
			}},
		{name: "conns_per_node out of range", yaml: "conns_per_node: 0\n",
			want: func(cfg string) string { return "slotproxy: " + cfg + ": conns_per_node: must be 1..64\n" }},
		{name: "timeout zero", yaml: "timeout: 0s\n",
			want: func(cfg string) string { return "slotproxy: " + cfg + ": timeout: must be > 0\n" }},
		{name: "read_from unknown", yaml: "read_from: nearest\n",
			want: func(cfg string) string {
				return "slotproxy: " + cfg + ": read_from: must be master, prefer-replica or replica\n"
			}},
		{name: "listen not host:port", yaml: "listen: 7777\n",
			want: func(cfg string) string { return "slotproxy: " + cfg + ": listen: \"7777\" is not host:port\n" }},
		{name: "duration unparsable", yaml: "event_loops: 1\ntimeout: fast\n",
			want: func(cfg string) string {
				return "slotproxy: " + cfg + ": timeout: line 2: \"fast\" is not a duration like \"500ms\" or \"20s\"\n"
			}},
		{name: "number unparsable", yaml: "max_clients: many\n",
			want: func(cfg string) string {
				return "slotproxy: " + cfg + ": max_clients: line 1: cannot unmarshal !!str `many` into int\n"
			}},
		{name: "flag -seeds not host:port", yaml: "event_loops: 1\n", args: []string{"-seeds", "127.0.0.1:1,nohost"},
			want: func(string) string { return "slotproxy: seeds: \"nohost\" is not host:port\n" }},
		{name: "flag -metrics not host:port", yaml: "event_loops: 1\n", args: []string{"-metrics", "9777"},
			want: func(string) string { return "slotproxy: metrics: \"9777\" is not host:port\n" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Good values for what the case does not spoil, so that only the fault can stop it.
			listen := addrOf(redistest.FreePort(t))
			args := append([]string{"-listen", listen, "-metrics", "off", "-seeds", addrOf(redistest.FreePort(t))}, tc.args...)
			if strings.HasPrefix(tc.yaml, "listen:") {
				args = args[2:] // the file's listen is the fault
			}
			p := runBinary(t, tc.yaml, args...)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("the proxy still runs 10 s after start with a bad config; log:\n%s", p.Log())
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if got, want := p.Log(), tc.want(p.cfgPath); got != want {
				t.Errorf("output %q, want %q", got, want)
			}
		})
	}
}

// goTB lets a helper that takes a testing.TB run on another goroutine: Fatal records the message and ends
// that goroutine only; the test reads err afterwards.
type goTB struct {
	testing.TB
	mu  sync.Mutex
	err string
}

func (g *goTB) Helper() {}
func (g *goTB) Fatal(args ...any) {
	g.mu.Lock()
	g.err = fmt.Sprint(args...)
	g.mu.Unlock()
	runtime.Goexit()
}
func (g *goTB) Fatalf(f string, args ...any) { g.Fatal(fmt.Sprintf(f, args...)) }

// TestLoadingThroughProxy: README "LOADING ... retried with backoff until the request's deadline", against
// real Redis. A cluster master that loads its dataset answers key commands -CLUSTERDOWN, not -LOADING (Redis
// checks the cluster state before the loading state, and a restarted master's state stays fail until it has
// loaded), so the real-Redis LOADING comes from a replica in a full resync. With read_from: replica, the
// replica of a master holding 20,000 keys is restarted with key-load-delay 100 µs per key, so that, after its
// resync, it answers "-LOADING Redis is loading the dataset in memory" for seconds (seen directly, over a
// READONLY connection). A GET sent through the proxy meanwhile gets the key's exact value within 1 s (the
// LOADING reply is retried, on the master), and backend_retries_total{reason="loading"} grew by >= 1.
func TestLoadingThroughProxy(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1,
		ExtraArgs: []string{"--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024",
			"--enable-debug-command", "local"}})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.ReadFrom = "replica" })
	snap := snapshotOf(srv)
	m := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
	replica := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	tag := keyInShard(snap, 0)
	key := "{" + tag + "}:loaded"
	if got := string(mustDo(t, addr, "SET", key, "value-from-master")); got != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if _, err := m.Do("DEBUG", "POPULATE", "20000", "{"+tag+"}:fill"); err != nil {
		t.Fatal(err)
	}

	// Without its dump.rdb (the copy of its last sync) the replica cannot resync partially: it takes a full
	// copy of the master's 20,001 keys and loads it.
	replica.Stop()
	stopped := time.Now()
	if err := os.Remove(filepath.Join(replica.Dir, "dump.rdb")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	tb := &goTB{TB: t}
	restarted := make(chan struct{})
	go func() { defer close(restarted); replica.Restart(tb) }()
	t.Cleanup(func() { <-restarted })

	const loading = "-LOADING Redis is loading the dataset in memory\r\n"
	var lastProbe string
	probeUntil := time.Now().Add(20 * time.Second)
	for {
		got, err := rawPipeline(replica.Addr, time.Second, []string{"READONLY"}, []string{"GET", key})
		// The proxy skips a replica for a second after its connection drops: past that, reads go to it again.
		if err == nil && len(got) == 2 && string(got[1]) == loading && time.Since(stopped) > 1500*time.Millisecond {
			break
		}
		lastProbe = fmt.Sprintf("%q %v", got, err)
		if time.Now().After(probeUntil) {
			t.Fatalf("the restarted replica never answered LOADING within 20 s (last: %s)\n%s", lastProbe, replica.LogTail(20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	loadingRetries := func() int64 { return srv.BackendStats().Retries[backend.RetryLoading] }
	tryBefore := loadingRetries()
	got, took, err := rawDo(addr, 10*time.Second, "GET", key)
	if err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	after, _ := rawPipeline(replica.Addr, time.Second, []string{"READONLY"}, []string{"GET", key})
	t.Logf("GET through the proxy while the replica loads took %v; the replica then answered %q", took, after)
	if want := "$17\r\nvalue-from-master\r\n"; string(got) != want {
		t.Errorf("GET through the proxy while the replica loads: %q, want %q", got, want)
	}
	if took > time.Second {
		t.Errorf("GET took %v, want < 1s (LOADING retried at once elsewhere, not waited out)", took)
	}
	if d := loadingRetries() - tryBefore; d < 1 {
		t.Errorf("backend_retries_total{reason=loading} grew by %d during the GET, want >= 1 (the replica's LOADING retried)", d)
	}
	<-restarted
	if tb.err != "" {
		t.Fatalf("restart: %s", tb.err)
	}
}

// rawPipeline sends commands on one new connection and returns their replies. Like rawDo it calls no
// testing function.
func rawPipeline(addr string, timeout time.Duration, cmds ...[]string) ([][]byte, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var req []byte
	for _, cmd := range cmds {
		req = resp.AppendCommandStrings(req, cmd...)
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	var out [][]byte
	var sc resp.ReplyScanner
	var buf []byte
	for len(out) < len(cmds) {
		if len(buf) > 0 {
			n, err := sc.Scan(buf)
			if err != nil {
				return out, err
			}
			if n > 0 {
				out = append(out, buf[:n])
				buf = nil
				sc.Reset()
				continue
			}
		}
		b, err := r.ReadByte()
		if err != nil {
			return out, err
		}
		buf = append(buf, b)
	}
	return out, nil
}

// mustDo is rawDo failing the test on a connection error.
func mustDo(t *testing.T, addr string, args ...string) []byte {
	t.Helper()
	got, _, err := rawDo(addr, 10*time.Second, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return got
}

// TestFullCoverageShardLost: README "With the default cluster-require-full-coverage yes Redis itself stops
// serving every slot, and so does the proxy, at the deadline." 3+3 cluster (cluster-node-timeout 2 s), proxy
// timeout 3 s; a master and its replica are killed. Once the surviving masters themselves answer
// "-CLUSTERDOWN The cluster is down" (cluster_state:fail, after the node timeout and the failure report), a
// GET through the proxy for a key of each surviving shard gets exactly that text, no earlier than the deadline
// (3 s - 20 ms) and at most 1 s after it; a key of the dead shard gets "-CLUSTERDOWN The cluster is down: node
// <master> is unreachable", also at the deadline. After both processes restart, SET and GET on every shard
// are served again (polled, 60 s).
func TestFullCoverageShardLost(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	const deadline = 3 * time.Second
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Timeout = proxy.Duration(deadline) })
	snap := snapshotOf(srv)
	master := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
	replica := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	keys := make([]string, len(snap.Shards))
	for i := range keys {
		keys[i] = keyInShard(snap, i)
		if got := string(mustDo(t, addr, "SET", keys[i], "before")); got != "+OK\r\n" {
			t.Fatalf("SET %s: %q", keys[i], got)
		}
	}

	ms, err := metrics.Listen("127.0.0.1:0", metrics.NewRegistry(), srv.NotReady, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(context.Background())
	readyz := "http://" + ms.Addr() + "/readyz"
	expectHTTP(t, readyz, http.StatusOK, "ok\n")

	killed := time.Now()
	replica.Kill()
	master.Kill()
	redistest.WaitFor(t, 5*time.Second, "/readyz 503 with the shard down", func() error {
		want := "1 of 3 masters do not answer: " + master.Addr + " (connection refused)\n"
		if code, body, _, err := httpGet(readyz); err != nil || code != http.StatusServiceUnavailable || body != want {
			return fmt.Errorf("%d %q %v, want 503 %q", code, body, err, want)
		}
		return nil
	})
	t.Logf("/readyz answers 503 %v after the kill", time.Since(killed))
	const down = "-CLUSTERDOWN The cluster is down\r\n"
	for i := 1; i < len(snap.Shards); i++ {
		survivor := nodeByAddr(cl, snap.Nodes[snap.Shards[i].Master].Addr)
		redistest.WaitFor(t, 30*time.Second, "surviving master "+survivor.Addr+" stops serving its own slots", func() error {
			got, _, err := rawDo(survivor.Addr, 2*time.Second, "GET", keys[i])
			if err == nil && string(got) != down {
				err = fmt.Errorf("GET %s on its own master: %q", keys[i], got)
			}
			return err
		})
		info, err := survivor.DoString("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:fail") {
			t.Errorf("%s CLUSTER INFO: want cluster_state:fail (%v)", survivor.Addr, err)
		}
	}
	t.Logf("the surviving masters answer CLUSTERDOWN %v after the kill", time.Since(killed))

	type result struct {
		got  string
		took time.Duration
		err  error
	}
	results := make([]result, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			got, took, err := rawDo(addr, deadline+5*time.Second, "GET", k)
			results[i] = result{string(got), took, err}
		})
	}
	wg.Wait()
	for i, r := range results {
		want := down
		if i == 0 {
			want = "-CLUSTERDOWN The cluster is down: node " + master.Addr + " is unreachable\r\n"
		}
		if r.err != nil || r.got != want {
			t.Errorf("shard %d GET %s through the proxy: %q %v, want %q", i, keys[i], r.got, r.err, want)
		}
		if r.took < deadline-20*time.Millisecond || r.took > deadline+time.Second {
			t.Errorf("shard %d: answered after %v, want at the %v deadline (within [-20ms, +1s])", i, r.took, deadline)
		}
	}

	master.Restart(t)
	replica.Restart(t)
	healed := time.Now()
	var last string
	redistest.WaitFor(t, 60*time.Second, "every shard serves again through the proxy", func() error {
		for _, k := range keys {
			got, _, err := rawDo(addr, deadline+2*time.Second, "SET", k, "after")
			if err != nil || string(got) != "+OK\r\n" {
				last = fmt.Sprintf("SET %s: %q %v", k, got, err)
				return errors.New(last)
			}
		}
		return nil
	})
	t.Logf("served again %v after the restart", time.Since(healed))
	redistest.WaitFor(t, 5*time.Second, "/readyz 200 once healed", func() error {
		if code, body, _, err := httpGet(readyz); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	for _, k := range keys {
		if got := string(mustDo(t, addr, "GET", k)); got != "$5\r\nafter\r\n" {
			t.Errorf("GET %s after healing: %q, want \"after\"", k, got)
		}
	}
}
