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
		{name: "peers", yaml: "peers:\n  bind: 0.0.0.0:7946\n  join: [10.0.0.2:7946]\n  secret: 0123456789abcdef\n" +
			"  accept_secrets: [fedcba9876543210]\n  cluster_facade: true\n  announce: 10.0.0.1:7777\n",
			check: func(c *Config) bool {
				p := c.Peers
				return p.Bind == "0.0.0.0:7946" && p.ClusterFacade && p.Announce == "10.0.0.1:7777" &&
					len(p.AcceptSecrets) == 1 && p.Profile == "lan" && !p.PollEveryone
			}},
		{name: "facade without peers", yaml: "peers:\n  cluster_facade: true\n", wantErr: "peers.cluster_facade: needs peers.bind"},
		{name: "announce every interface", yaml: "peers:\n  bind: :7946\n  announce: 0.0.0.0:7777\n", wantErr: "peers.announce"},
		{name: "announce no host", yaml: "peers:\n  bind: :7946\n  announce: :7777\n", wantErr: "peers.announce"},
		{name: "announce port 0", yaml: "peers:\n  bind: :7946\n  announce: 10.0.0.1:0\n", wantErr: "peers.announce"},
		{name: "short secret", yaml: "peers:\n  bind: :7946\n  secret: short\n", wantErr: "peers.secret"},
		{name: "bad accepted secret", yaml: "peers:\n  bind: :7946\n  secret: 0123456789abcdef\n  accept_secrets: [x]\n",
			wantErr: "peers.secret, peers.accept_secrets"},
		{name: "accepted secret alone", yaml: "peers:\n  bind: :7946\n  accept_secrets: [0123456789abcdef]\n",
			wantErr: "peers.accept_secrets: needs peers.secret"},
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
	if !strings.HasSuffix(cfg.Path, "/proxy.yaml") || def.Path != "" {
		t.Errorf("Path %q from Load, %q in the defaults", cfg.Path, def.Path)
	}
	if len(cfg.Users) != 0 || len(def.Users) != 0 {
		t.Errorf("users %v, defaults %v", cfg.Users, def.Users)
	}
	cfg.Seeds, def.Seeds, cfg.Path, cfg.Users, def.Users = nil, nil, "", nil, nil
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("proxy.yaml %+v\ndefaults  %+v", cfg, def)
	}
}
