package proxy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(*Config) bool
	}{
		{name: "empty file gives defaults", yaml: "", check: func(c *Config) bool {
			return c.Listen == "127.0.0.1:7777" && c.Timeout.D() == 20*time.Second && len(c.Seeds) == 6
		}},
		{name: "values", yaml: "listen: 0.0.0.0:6380\ntimeout: 1500ms\nseeds: [a:1]\nretry:\n  backoff_max: 1s\n",
			check: func(c *Config) bool {
				return c.Listen == "0.0.0.0:6380" && c.Timeout.D() == 1500*time.Millisecond &&
					c.Retry.BackoffMax.D() == time.Second && c.Retry.BackoffMin.D() == 2*time.Millisecond
			}},
		{name: "unknown key", yaml: "listen: a:1\ntimeoutt: 1s\n", wantErr: ": timeoutt: line 2: unknown key"},
		{name: "unknown nested key", yaml: "retry:\n  backof_min: 1ms\n", wantErr: ": retry.backof_min: line 2: unknown key"},
		{name: "two unknown keys", yaml: "a: 1\nb: 2\n", wantErr: ": a: line 1: unknown key; b: line 2: unknown key"},
		{name: "bare number duration", yaml: "timeout: 5\n", wantErr: `: timeout: line 1: "5" is not a duration`},
		{name: "number unparsable", yaml: "max_clients: many\n", wantErr: ": max_clients: line 1: cannot unmarshal !!str `many` into int"},
		{name: "bad seed list", yaml: "seeds:\n  - a:1\n  - [x]\n", wantErr: ": seeds: line 3: cannot unmarshal"},
		{name: "query limit", yaml: "client_query_buffer_limit: 2mb\n", check: func(c *Config) bool { return c.QueryLimit == 2<<20 }},
		{name: "query limit too small", yaml: "client_query_buffer_limit: 1000\n", wantErr: "client_query_buffer_limit: must be 1mb..1gb"},
		{name: "query limit too large", yaml: "client_query_buffer_limit: 2gb\n", wantErr: "client_query_buffer_limit: must be 1mb..1gb"},
		{name: "bad listen", yaml: "listen: nope\n", wantErr: "listen:"},
		{name: "no seeds", yaml: "seeds: []\n", wantErr: "seeds:"},
		{name: "bad seed", yaml: "seeds: [x]\n", wantErr: `seeds: "x"`},
		{name: "conns", yaml: "conns_per_node: 0\n", wantErr: "conns_per_node"},
		{name: "backoff order", yaml: "retry: {backoff_min: 1s, backoff_max: 1ms}\n", wantErr: "retry.backoff_max"},
		{name: "log level", yaml: "log_level: loud\n", wantErr: "log_level"},
		{name: "output limit sizes", yaml: "client_output_buffer_limit: {hard: 256mb, soft: 64MB, soft_seconds: 60s}\n",
			check: func(c *Config) bool {
				return c.OutputLimit.Hard == 256<<20 && c.OutputLimit.Soft == 64<<20 &&
					c.OutputLimit.SoftSeconds.D() == time.Minute
			}},
		{name: "output limit units", yaml: "client_output_buffer_limit: {hard: 2k, soft: 1048576}\n",
			check: func(c *Config) bool { return c.OutputLimit.Hard == 2000 && c.OutputLimit.Soft == 1<<20 }},
		{name: "bad size", yaml: "client_output_buffer_limit: {hard: lots}\n", wantErr: `"lots" is not a size`},
		{name: "negative size", yaml: "client_output_buffer_limit: {hard: -1mb}\n", wantErr: "is not a size"},
		{name: "timeouts", yaml: "idle_timeout: 30s\ntcp_keepalive: 0s\n", check: func(c *Config) bool {
			return c.IdleTimeout.D() == 30*time.Second && c.TCPKeepalive == 0
		}},
		{name: "negative idle", yaml: "idle_timeout: -1s\n", wantErr: "idle_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "proxy.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load(%q) error = %v, want it to contain %q", tc.yaml, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(%q): %v", tc.yaml, err)
			}
			if !tc.check(cfg) {
				t.Errorf("Load(%q) = %+v", tc.yaml, cfg)
			}
		})
	}
}

// The shipped proxy.yaml is valid and equal to the defaults it documents.
func TestShippedConfigIsDefault(t *testing.T) {
	cfg, err := Load("../proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if strings.Join(cfg.Seeds, ",") != strings.Join(def.Seeds, ",") {
		t.Errorf("seeds %v, defaults %v", cfg.Seeds, def.Seeds)
	}
	cfg.Seeds, def.Seeds = nil, nil
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("proxy.yaml %+v\ndefaults  %+v", cfg, def)
	}
}
