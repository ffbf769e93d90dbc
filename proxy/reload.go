package proxy

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/slotproxy/slotproxy/topology"
)

// Reloading (SIGHUP in main): the keys below take effect in the running proxy without dropping a client;
// the others need a restart and are only reported.

// reloadable are the keys Reload applies: each loop takes the new backend configuration and request
// deadline on its own goroutine; the rest are live atomics.
var reloadable = []string{"timeout", "dial_timeout", "read_from", "retry", "max_redirects", "max_clients",
	"idle_timeout", "tcp_keepalive", "client_output_buffer_limit", "client_query_buffer_limit", "drain_timeout",
	"log_level", "seeds", "slowlog_log_slower_than", "slowlog_max_len", "max_leased_conns", "requirepass", "users",
	"aclfile", "protected_mode", "tls", "backend_tls"}

// Reload applies next's reloadable keys (see reloadable) to the running proxy, and returns the keys it
// changed and those that differ but need a restart. next must be valid. main applies log_level and seeds,
// which the server does not own.
func (s *Server) Reload(next *Config) (changed, restart []string) {
	cur := s.current.Load()
	for _, k := range diffKeys(cur, next) {
		if slices.Contains(reloadable, k) {
			changed = append(changed, k)
		} else {
			restart = append(restart, k)
		}
	}
	// Keys that need a restart keep their running values.
	applied := *next
	keepRestartOnly(&applied, cur)
	if applied.TLS.Listen != cur.TLS.Listen { // the certificates reload, the listener stays
		applied.TLS.Listen = cur.TLS.Listen
		restart = append(restart, "tls.listen")
	}
	if err := s.reloadTLS(&applied); err != nil { // next was validated; the files may have changed since
		s.log.Error("reload: TLS files not valid; keeping the running ones", "err", err)
	}
	if m, ok := s.topo.(*topology.Manager); ok { // the pools take backend_tls with the backend configuration
		if conf, err := applied.BackendTLSConfig(); err == nil {
			m.SetTLS(conf)
		}
	}
	s.current.Store(&applied)
	s.setBackendConfig(&applied)
	s.live.init(&applied)
	b, b3, timeout := s.bcfg.Load(), s.bcfg3.Load(), int64(applied.Timeout)
	// Users: a new AUTH finds the new ones; a session keeps the user it authenticated as, unless that user
	// is gone or disabled: then it is closed, as Redis closes them on ACL DELUSER.
	users, err := applied.ACLUsers()
	if err != nil { // next was validated; the aclfile may have changed since
		s.log.Error("reload: client users not valid; keeping the running ones", "err", err)
		users = s.users.Load()
	}
	s.users.Store(users)
	onEachLoop(s, func(l *loop) bool {
		l.timeout = timeout
		l.pool.SetConfig(b)
		if p3 := l.pool3.Load(); p3 != nil {
			p3.SetConfig(b3)
		}
		for _, x := range slices.Clone(l.sessions) {
			if x.authed && x.user != nil {
				if u := users.Get(x.user.Name()); u == nil || !u.Enabled() {
					s.log.Info("closing client of a user removed or disabled", "client", x.raddr(), "user", x.user.Name())
					x.killed, x.closing = true, true
					_ = x.c.Close()
				}
			}
		}
		return true
	})
	s.stats.Reloads.Add(1)
	return changed, restart
}

// ReloadFailed counts a reload whose file could not be used; the running configuration stays.
func (s *Server) ReloadFailed() { s.stats.ReloadsFailed.Add(1) }

// diffKeys lists the top-level yaml keys whose values differ between a and b.
func diffKeys(a, b *Config) []string {
	var keys []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		if key := yamlKey(va.Type().Field(i)); key != "-" && !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return key
}

// keepRestartOnly copies into c the running values of the keys Reload does not apply.
func keepRestartOnly(c, running *Config) {
	vc, vr := reflect.ValueOf(c).Elem(), reflect.ValueOf(running).Elem()
	for i := range vc.NumField() {
		if !slices.Contains(reloadable, yamlKey(vc.Type().Field(i))) {
			vc.Field(i).Set(vr.Field(i))
		}
	}
}

// Config is the configuration running now: the start-up one with the reloads applied.
func (s *Server) Config() Config { return *s.current.Load() }

func (s *Server) reloadInfo() string {
	return fmt.Sprintf("proxy_config_reloads:%d\r\nproxy_config_reload_failures:%d\r\n", s.stats.Reloads.Load(),
		s.stats.ReloadsFailed.Load())
}
