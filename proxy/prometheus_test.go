package proxy_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
)

// TestPrometheus: the shipped alert rules and Prometheus configuration pass promtool, and a real Prometheus
// (Debian's) scraping a proxy under traffic answers a PromQL query for p99 latency by command with a value
// for GET, loads the alert rules, and sees the proxy ready.
func TestPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, args := range [][]string{
		{"check", "rules", "../deploy/prometheus/alerts.yml"},
		{"check", "config", "../deploy/prometheus/prometheus.yml"},
	} {
		if out, err := exec.Command("promtool", args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	ms, err := metrics.Listen("127.0.0.1:0", reg, srv.NotReady, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(t.Context())
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		c := newClient(addr)
		defer c.Close()
		for {
			select {
			case <-stop:
				return
			default:
				_ = c.Get(t.Context(), "prom:k").Err()
				time.Sleep(time.Millisecond)
			}
		}
	}()

	dir := t.TempDir()
	rules, _ := filepath.Abs("../deploy/prometheus/alerts.yml")
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: slotproxy\n    static_configs: [{targets: [%q]}]\n", rules, ms.Addr())
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	web := addrOf(redistest.FreePort(t))
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	log := func() string { b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log")); return string(b) }

	query := func(q string) ([]map[string]any, error) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Status string
			Data   struct{ Result []map[string]any }
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
			return nil, fmt.Errorf("status %q: %v", body.Status, err)
		}
		return body.Data.Result, nil
	}
	p99 := `histogram_quantile(0.99, sum by (command, le) (rate(slotproxy_request_duration_seconds_bucket[10s])))`
	var got float64
	redistest.WaitFor(t, 60*time.Second, "a p99 for GET from Prometheus", func() error {
		res, err := query(p99)
		if err != nil {
			return err
		}
		for _, r := range res {
			if r["metric"].(map[string]any)["command"] == "get" {
				v := r["value"].([]any)[1].(string)
				if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f <= 10 {
					got = f
					return nil
				}
				return fmt.Errorf("p99 for get is %s", v)
			}
		}
		return fmt.Errorf("no series for get yet in %v (Prometheus log:\n%s)", res, tail(log(), 5))
	})
	t.Logf("Prometheus: p99 of GET through the proxy = %.3f ms (%s)", got*1000, p99)
	if res, err := query("slotproxy_ready"); err != nil || len(res) != 1 || res[0]["value"].([]any)[1] != "1" {
		t.Errorf("slotproxy_ready from Prometheus: %v %v", res, err)
	}
	resp, err := http.Get("http://" + web + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rulesBody struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&rulesBody); err != nil || len(rulesBody.Data.Groups) != 1 ||
		len(rulesBody.Data.Groups[0].Rules) != 6 {
		t.Errorf("Prometheus rules: %+v %v", rulesBody, err)
	}
}
