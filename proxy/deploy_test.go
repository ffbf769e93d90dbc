package proxy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/proxy"
)

// TestDeployFiles: the compose and Kubernetes files parse, name what deploy/README.md says they hold, and
// carry proxy configurations that load; the Kubernetes Deployment probes /healthz and /readyz, pauses before
// SIGTERM and gives the drain its time; every metric a dashboard query names is in a real scrape of a proxy
// that served traffic.
func TestDeployFiles(t *testing.T) {
	loadConfig := func(name string, text []byte) *proxy.Config {
		t.Helper()
		path := filepath.Join(t.TempDir(), "proxy.yaml")
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := proxy.Load(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return cfg
	}

	// docker compose
	var compose struct {
		Services map[string]struct {
			Build   any
			Image   string
			Volumes []string
		}
	}
	b, err := os.ReadFile("../deploy/compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"redis-1", "redis-6", "cluster-create", "proxy-1", "proxy-2", "prometheus", "grafana"} {
		if _, ok := compose.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %s", name)
		}
	}
	for _, v := range append(compose.Services["prometheus"].Volumes, compose.Services["grafana"].Volumes...) {
		src := strings.SplitN(v, ":", 2)[0]
		if _, err := os.Stat(filepath.Join("../deploy/compose", src)); err != nil {
			t.Errorf("docker-compose.yml mounts %s: %v", src, err)
		}
	}
	b, _ = os.ReadFile("../deploy/compose/proxy.yaml")
	if cfg := loadConfig("compose/proxy.yaml", b); cfg.Peers.Bind == "" || cfg.Listen != "0.0.0.0:7777" {
		t.Errorf("compose/proxy.yaml: %+v", cfg)
	}

	// Kubernetes: several documents.
	b, err = os.ReadFile("../deploy/kubernetes/slotproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes/slotproxy.yaml: %v", err)
		}
		name := doc["kind"].(string) + "/" + doc["metadata"].(map[string]any)["name"].(string)
		kinds[name] = doc
	}
	for _, k := range []string{"ConfigMap/slotproxy", "Deployment/slotproxy", "Service/slotproxy",
		"Service/slotproxy-peers", "PodDisruptionBudget/slotproxy"} {
		if kinds[k] == nil {
			t.Errorf("kubernetes/slotproxy.yaml has no %s", k)
		}
	}
	cm := kinds["ConfigMap/slotproxy"]["data"].(map[string]any)["proxy.yaml"].(string)
	cfg := loadConfig("the ConfigMap's proxy.yaml", []byte(cm))
	pod := kinds["Deployment/slotproxy"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	c := pod["containers"].([]any)[0].(map[string]any)
	path := func(probe string) string {
		return c[probe].(map[string]any)["httpGet"].(map[string]any)["path"].(string)
	}
	if path("livenessProbe") != "/healthz" || path("readinessProbe") != "/readyz" {
		t.Errorf("probes on %s and %s", path("livenessProbe"), path("readinessProbe"))
	}
	pause := c["lifecycle"].(map[string]any)["preStop"].(map[string]any)["sleep"].(map[string]any)["seconds"].(int)
	grace := pod["terminationGracePeriodSeconds"].(int)
	if time.Duration(grace)*time.Second <= time.Duration(pause)*time.Second+cfg.DrainTimeout.D() {
		t.Errorf("terminationGracePeriodSeconds %d leaves no time after preStop %d s and drain_timeout %v", grace,
			pause, cfg.DrainTimeout.D())
	}

	// The dashboard's metric names, against a scrape of a proxy with traffic (the families with samples).
	b, err = os.ReadFile("../deploy/grafana/slotproxy-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	reg := metrics.NewRegistry()
	proxy.RegisterMetrics(reg, srv)
	rc := dialRaw(t, addr)
	for range 10 {
		rc.do("SET", "deploy:k", "v")
		rc.do("GET", "deploy:k")
		rc.do("INCR", "deploy:k")
	}
	names := map[string]bool{}
	for name := range gatherFamilies(t, reg) {
		names[strings.SplitN(name, "{", 2)[0]] = true
	}
	re := regexp.MustCompile(`slotproxy_[a-z_]+`)
	exprs := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, m := range re.FindAllString(tg.Expr, -1) {
				if !names[m] {
					t.Errorf("panel %q: %s is not in a scrape", p.Title, m)
				}
			}
		}
	}
	if len(dash.Panels) < 8 || exprs < 15 {
		t.Errorf("the dashboard has %d panels and %d queries", len(dash.Panels), exprs)
	}
}
