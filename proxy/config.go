package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/acl"
	"github.com/slotproxy/slotproxy/resp"
)

// Config is the whole proxy configuration, as in proxy.yaml. Default() gives the values used for keys the
// file leaves out.
type Config struct {
	Listen       string   `yaml:"listen"`        // client address
	Metrics      string   `yaml:"metrics"`       // Prometheus /metrics address; "" disables
	Pprof        bool     `yaml:"pprof"`         // net/http/pprof under /debug/pprof/ on the metrics address
	Seeds        []string `yaml:"seeds"`         // cluster nodes to learn the slot map from
	EventLoops   int      `yaml:"event_loops"`   // 0: EventLoops picks
	MaxClients   int      `yaml:"max_clients"`   // like Redis maxclients; 0: no limit
	IdleTimeout  Duration `yaml:"idle_timeout"`  // Redis's timeout: close clients idle this long; 0: never
	TCPKeepalive Duration `yaml:"tcp_keepalive"` // Redis's tcp-keepalive; 0: off
	DrainTimeout Duration `yaml:"drain_timeout"` // SIGTERM: longest wait for clients' replies; 0: none
	// SLOWLOG: commands whose client-seen latency reaches this many microseconds (-1: none, 0: all), and
	// how many of them are kept; CONFIG SET slowlog-log-slower-than and slowlog-max-len change them.
	SlowlogSlowerThan int64       `yaml:"slowlog_log_slower_than"`
	SlowlogMaxLen     int64       `yaml:"slowlog_max_len"`
	OutputLimit       OutputLimit `yaml:"client_output_buffer_limit"`
	QueryLimit        Size        `yaml:"client_query_buffer_limit"`
	Timeout           Duration    `yaml:"timeout"`          // deadline of each request, retries included
	DialTimeout       Duration    `yaml:"dial_timeout"`     // connect + AUTH to a node
	ConnsPerNode      int         `yaml:"conns_per_node"`   // pipelined connections per node per event loop
	MaxRedirects      int         `yaml:"max_redirects"`    // MOVED/ASK hops per request
	MaxLeasedConns    int         `yaml:"max_leased_conns"` // per node per event loop: WATCH/MULTI sessions
	RefreshInterval   Duration    `yaml:"refresh_interval"` // periodic slot map refresh
	Retry             Retry       `yaml:"retry"`
	ReadFrom          string      `yaml:"read_from"` // master, prefer-replica or replica
	Username          string      `yaml:"username"`  // backend ACL user
	Password          string      `yaml:"password"`  // backend password
	LogLevel          string      `yaml:"log_level"`
	LogFormat         string      `yaml:"log_format"` // text (logfmt) or json, on stderr
	Path              string      `yaml:"-"`          // the file it was loaded from (INFO config_file); "": defaults
	// CONFIG SET of a parameter the proxy does not own, and CONFIG RESETSTAT, go to every node (masters and
	// replicas) only when true; false refuses them with an error naming this key (configcmd.go).
	ConfigSetBroadcast bool `yaml:"config_set_broadcast"`
	// Peers: other proxies of the fleet, to learn cluster changes together; off while Bind is empty.
	Peers Peers `yaml:"peers"`
	// Client authentication, enforced by the proxy (auth.go): the default user's password, as Redis's
	// requirepass; ACL users in Redis's aclfile syntax ("user alice on >pw ~app:* +@all"), listed here and/or
	// in the file ACLFile (relative to this file); ProtectedMode as Redis's protected-mode.
	RequirePass   string   `yaml:"requirepass"`
	Users         []string `yaml:"users"`
	ACLFile       string   `yaml:"aclfile"`
	ProtectedMode YesNo    `yaml:"protected_mode"`
	// TLS for clients, on a port of its own as Redis's tls-port (tls.go).
	TLS TLS `yaml:"tls"`
	// BackendTLS: the proxy's connections to the nodes (seeds, slot map, requests, health) use TLS.
	BackendTLS BackendTLS `yaml:"backend_tls"`
}

// BackendTLS is how the proxy reaches nodes that listen with TLS (Redis's tls-port; with tls-cluster the
// slot map then lists the nodes' TLS ports). Seeds are TLS addresses then.
type BackendTLS struct {
	Enabled    YesNo  `yaml:"enabled"`
	CA         string `yaml:"ca"`   // PEM CAs of the nodes' certificates; empty: the system's
	Cert       string `yaml:"cert"` // the proxy's client certificate, for nodes with tls-auth-clients
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"` // name in the nodes' certificates; empty: each node's host
}

// TLS is the client-facing TLS listener: Redis's tls-port, tls-cert-file, tls-key-file, tls-ca-cert-file,
// tls-auth-clients, tls-protocols and tls-ciphers. The certificate, key and CA are read again on SIGHUP.
type TLS struct {
	Listen      string   `yaml:"listen"`       // host:port for TLS clients; empty: no TLS
	Cert        string   `yaml:"cert"`         // PEM certificate chain (relative paths: to this file)
	Key         string   `yaml:"key"`          // PEM private key
	CA          string   `yaml:"ca"`           // PEM CAs of client certificates
	AuthClients string   `yaml:"auth_clients"` // with ca: yes (default, a client certificate is required), optional, no
	MinVersion  string   `yaml:"min_version"`  // "1.2" (default) or "1.3"
	Ciphers     []string `yaml:"ciphers"`      // TLS 1.2 suites by their Go names; TLS 1.3's are Go's own
}

// YesNo is a boolean written as Redis writes its booleans (yes, no), or as true and false.
type YesNo bool

func (b *YesNo) UnmarshalYAML(n *yaml.Node) error {
	switch strings.ToLower(n.Value) {
	case "yes", "true":
		*b = true
	case "no", "false":
		*b = false
	default:
		return fmt.Errorf("line %d: %q: want yes or no", n.Line, n.Value)
	}
	return nil
}

func (b YesNo) MarshalYAML() (any, error) {
	if b {
		return "yes", nil
	}
	return "no", nil
}

// ACLUsers builds the client users of the configuration: Users, then the lines of ACLFile, with
// RequirePass as the default user's password.
func (c *Config) ACLUsers() (*acl.Users, error) {
	lines := slices.Clone(c.Users)
	if c.ACLFile != "" {
		data, err := os.ReadFile(c.resolve(c.ACLFile))
		if err != nil {
			return nil, fmt.Errorf("aclfile: %w", err)
		}
		lines = append(lines, strings.Split(string(data), "\n")...)
	}
	users, err := acl.Build(lines, c.RequirePass)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return users, nil
}

// Peers is the proxy's membership in a fleet of proxies (topology.Peers): where it gossips, whom it joins.
type Peers struct {
	Bind      string   `yaml:"bind"`      // host:port for gossip (TCP and UDP); empty: no peers
	Advertise string   `yaml:"advertise"` // host:port the other proxies reach this one at; empty: bind
	Join      []string `yaml:"join"`      // peers to join at start; empty: the first of a fleet
	Secret    string   `yaml:"secret"`    // 16, 24 or 32 bytes, or as hex: encrypts gossip; empty: clear
	// AcceptSecrets are also accepted from peers, never used to send: to rotate the secret (README).
	AcceptSecrets []string `yaml:"accept_secrets"`
	Profile       string   `yaml:"profile"` // lan (default), wan or local: memberlist's timing presets
	// ClusterFacade: to cluster-aware clients (CLUSTER SLOTS, SHARDS, NODES, INFO ...) the live proxies look
	// like a Redis Cluster of masters, the slots spread evenly over them; any proxy still serves any slot.
	ClusterFacade bool `yaml:"cluster_facade"`
	// Announce is host:port where clients reach this proxy, for the facade; empty: listen, with the gossip
	// address's host when listen is on every interface.
	Announce string `yaml:"announce"`
	// PollEveryone: every proxy polls the cluster on its own; false: one proxy of the fleet polls for all.
	PollEveryone bool `yaml:"poll_everyone"`
}

// OutputLimit is Redis's client-output-buffer-limit for normal clients: a client whose unread replies pass
// Hard, or stay over Soft for SoftSeconds, is closed. 0 disables a limit.
type OutputLimit struct {
	Hard        Size     `yaml:"hard"`
	Soft        Size     `yaml:"soft"`
	SoftSeconds Duration `yaml:"soft_seconds"`
}

// liveConfig holds the values CONFIG SET changes while the proxy runs (configcmd.go); Config itself is not
// written after New. Every event loop reads them and the loop that runs a CONFIG SET writes them, hence the
// atomics. None is read per request: per accepted connection, or per idle sweep (once a second).
type liveConfig struct {
	idleTimeout   atomic.Int64 // ns: Redis's timeout, idle_timeout; 0: never
	maxClients    atomic.Int64 // Redis's maxclients, max_clients; 0: no limit
	tcpKeepalive  atomic.Int64 // ns: Redis's tcp-keepalive, tcp_keepalive, for connections accepted next; 0: off
	timeout       atomic.Int64 // ns: the request deadline, timeout, for loops made next (each loop keeps its own)
	queryLimit    atomic.Int64 // client_query_buffer_limit, bytes
	outputLimit   atomic.Pointer[OutputLimit]
	slowlogSlower atomic.Int64 // µs: slowlog-log-slower-than; -1: none
	slowlogMaxLen atomic.Int64
}

func (lc *liveConfig) init(c *Config) {
	lc.idleTimeout.Store(int64(c.IdleTimeout))
	lc.maxClients.Store(int64(c.MaxClients))
	lc.tcpKeepalive.Store(int64(c.TCPKeepalive))
	lc.timeout.Store(int64(c.Timeout))
	lc.queryLimit.Store(int64(c.QueryLimit))
	lim := c.OutputLimit
	lc.outputLimit.Store(&lim)
	lc.slowlogSlower.Store(c.SlowlogSlowerThan)
	lc.slowlogMaxLen.Store(c.SlowlogMaxLen)
}

// Retry is the backoff for TRYAGAIN, CLUSTERDOWN and lost nodes.
type Retry struct {
	BackoffMin Duration `yaml:"backoff_min"`
	BackoffMax Duration `yaml:"backoff_max"`
}

// Default returns the configuration that fronts the local demo cluster.
func Default() *Config {
	return &Config{
		Listen:  "127.0.0.1:7777",
		Metrics: "127.0.0.1:9777",
		Seeds: []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002",
			"127.0.0.1:7003", "127.0.0.1:7004", "127.0.0.1:7005"},
		MaxClients:        10000,
		TCPKeepalive:      Duration(300 * time.Second),
		DrainTimeout:      Duration(10 * time.Second),
		SlowlogSlowerThan: 10000,
		SlowlogMaxLen:     128,
		OutputLimit:       OutputLimit{Hard: 1 << 30},
		QueryLimit:        resp.MaxQueryBuffer,
		Timeout:           Duration(20 * time.Second),
		DialTimeout:       Duration(time.Second),
		ConnsPerNode:      1,
		MaxRedirects:      5,
		MaxLeasedConns:    1000,
		RefreshInterval:   Duration(5 * time.Second),
		Retry:             Retry{BackoffMin: Duration(2 * time.Millisecond), BackoffMax: Duration(200 * time.Millisecond)},
		ReadFrom:          "master",
		LogLevel:          "info",
		LogFormat:         "text",

		ConfigSetBroadcast: false,
		Peers:              Peers{Profile: "lan"},
		ProtectedMode:      true,
	}
}

// Load reads a YAML file over the defaults. Unknown keys and values that do not parse are errors naming the
// key and its line.
func Load(path string) (*Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, namedError(data, err))
	}
	if abs, err := filepath.Abs(path); err == nil {
		cfg.Path = abs // before Validate: an aclfile is found next to the file
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// namedError puts the key in front of each of a decoding error's "line N: ..." problems (yaml.v3 names the line
// only), and says "unknown key" for a key no field has.
func namedError(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	keys := map[int]string{}
	keysByLine(&root, "", keys)
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = slices.Clone(te.Errors)
	}
	for i, m := range msgs {
		var line int
		if _, e := fmt.Sscanf(m, "line %d:", &line); e != nil || keys[line] == "" {
			continue
		}
		if strings.Contains(m, " not found in type ") {
			m = fmt.Sprintf("line %d: unknown key", line)
		}
		msgs[i] = keys[line] + ": " + m
	}
	return errors.New(strings.Join(msgs, "; "))
}

// keysByLine maps each line of a YAML document to the dotted key written on it (a list item: its list's key).
func keysByLine(n *yaml.Node, prefix string, keys map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keysByLine(c, prefix, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			name := n.Content[i].Value
			if prefix != "" {
				name = prefix + "." + name
			}
			keys[n.Content[i].Line] = name
			keysByLine(n.Content[i+1], name, keys)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if keys[c.Line] == "" {
				keys[c.Line] = prefix
			}
			keysByLine(c, prefix, keys)
		}
	}
}

// Validate checks every value and names the key at fault.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.Metrics != "" {
		if _, _, err := net.SplitHostPort(c.Metrics); err != nil {
			return fmt.Errorf("metrics: %q is not host:port", c.Metrics)
		}
	}
	if len(c.Seeds) == 0 {
		return errors.New("seeds: at least one cluster node is needed")
	}
	if p := c.Peers; p.Bind != "" {
		for key, addr := range map[string]string{"peers.bind": p.Bind, "peers.advertise": p.Advertise,
			"peers.announce": p.Announce} {
			if _, _, err := net.SplitHostPort(addr); addr != "" && err != nil {
				return fmt.Errorf("%s: %q is not host:port", key, addr)
			}
		}
		switch p.Profile {
		case "", "lan", "wan", "local":
		default:
			return fmt.Errorf("peers.profile: %q: want lan, wan or local", p.Profile)
		}
		for _, sec := range append([]string{p.Secret}, p.AcceptSecrets...) {
			if n := len(sec); n != 0 && n != 16 && n != 24 && n != 32 && n != 32*2 && n != 24*2 {
				return errors.New("peers.secret, peers.accept_secrets: want 16, 24 or 32 bytes, or as many bytes in hex")
			}
		}
		if p.Announce != "" {
			if host, port, _ := net.SplitHostPort(p.Announce); unspecifiedHost(host) || port == "0" {
				return fmt.Errorf("peers.announce: %q: clients need a host and a port to connect to", p.Announce)
			}
		}
		if p.Secret == "" && len(p.AcceptSecrets) > 0 {
			return errors.New("peers.accept_secrets: needs peers.secret")
		}
	} else if c.Peers.ClusterFacade {
		return errors.New("peers.cluster_facade: needs peers.bind")
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("seeds: %q is not host:port", s)
		}
	}
	checks := []struct {
		ok  bool
		key string
		msg string
	}{
		{c.EventLoops >= 0, "event_loops", "must be >= 0"},
		{c.MaxClients >= 0, "max_clients", "must be >= 0"},
		{c.IdleTimeout >= 0, "idle_timeout", "must be >= 0"},
		{c.TCPKeepalive >= 0, "tcp_keepalive", "must be >= 0"},
		{c.DrainTimeout >= 0, "drain_timeout", "must be >= 0"},
		{c.SlowlogSlowerThan >= -1, "slowlog_log_slower_than", "must be >= -1"},
		{c.SlowlogMaxLen >= 0, "slowlog_max_len", "must be >= 0"},
		{c.OutputLimit.SoftSeconds >= 0, "client_output_buffer_limit.soft_seconds", "must be >= 0"},
		{c.QueryLimit >= 1<<20 && c.QueryLimit <= resp.MaxQueryBuffer, "client_query_buffer_limit", "must be 1mb..1gb"},
		{c.Timeout > 0, "timeout", "must be > 0"},
		{c.DialTimeout > 0, "dial_timeout", "must be > 0"},
		{c.ConnsPerNode >= 1 && c.ConnsPerNode <= 64, "conns_per_node", "must be 1..64"},
		{c.MaxRedirects >= 0, "max_redirects", "must be >= 0"},
		{c.MaxLeasedConns >= 1, "max_leased_conns", "must be >= 1"},
		{c.RefreshInterval > 0, "refresh_interval", "must be > 0"},
		{c.Retry.BackoffMin > 0, "retry.backoff_min", "must be > 0"},
		{c.Retry.BackoffMax >= c.Retry.BackoffMin, "retry.backoff_max", "must be >= retry.backoff_min"},
		{validReadFrom(c.ReadFrom), "read_from", "must be master, prefer-replica or replica"},
		{c.LogLevel == "debug" || c.LogLevel == "info" || c.LogLevel == "warn" || c.LogLevel == "error",
			"log_level", "must be debug, info, warn or error"},
		{c.LogFormat == "text" || c.LogFormat == "json", "log_format", "must be text or json"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%s: %s", ch.key, ch.msg)
		}
	}
	if _, err := c.ACLUsers(); err != nil {
		return err
	}
	if _, err := buildTLS(c); err != nil {
		return err
	}
	if _, err := c.BackendTLSConfig(); err != nil {
		return err
	}
	return nil
}

func validReadFrom(s string) bool {
	_, ok := backend.ParseReadPolicy(s)
	return ok
}

// Duration is a time.Duration written as a string in YAML ("500ms", "20s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration like \"500ms\" or \"20s\" is expected", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like \"500ms\" or \"20s\"", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Size is a byte count written as in redis.conf: 1048576, 64kb, 256mb, 1gb (k, m, g are powers of 1000; kb,
// mb, gb of 1024; case does not matter).
type Size int64

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, ok := parseSize(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		return fmt.Errorf("line %d: %q is not a size like 1048576, 64kb or 256mb", n.Line, n.Value)
	}
	*s = Size(v)
	return nil
}

func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

func parseSize(s string) (int64, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	mul := int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1000}, {"m", 1000 * 1000}, {"g", 1000 * 1000 * 1000}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSuffix(s, u.suffix), u.mul
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mul {
		return 0, false
	}
	return v * mul, true
}

// unspecifiedHost: empty, 0.0.0.0 or ::, which a listener takes for every interface and nobody can dial.
func unspecifiedHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}
