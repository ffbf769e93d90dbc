package proxy

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/metrics"
	"github.com/slotproxy/slotproxy/topology"
)

// RegisterMetrics exports the server's counters; they are read at scrape time only.
func RegisterMetrics(reg prometheus.Registerer, s *Server) {
	st := &s.stats
	metrics.GaugeFunc(reg, "client_connections", "Clients connected now.",
		func() float64 { return float64(st.Clients.Load()) })
	metrics.CounterFunc(reg, "client_connections_total", "Clients accepted since start.",
		func() float64 { return float64(st.ClientsTotal.Load()) })
	metrics.CounterFunc(reg, "commands_total", "Commands answered, local and forwarded.",
		func() float64 { return float64(s.totalCommands()) })
	metrics.CounterFunc(reg, "client_refused_draining_total", "Clients answered \"shutting down\" and closed during a drain.",
		func() float64 { return float64(st.DrainRefused.Load()) })
	metrics.CounterFunc(reg, "auth_failures_total", "AUTH and HELLO AUTH refused: unknown user, wrong password or user off.",
		func() float64 { return float64(st.AuthFailures.Load()) })
	metrics.CounterFunc(reg, "noauth_total", "Commands refused with NOAUTH: sent before the client authenticated.",
		func() float64 { return float64(st.NoAuth.Load()) })
	for d, reason := range denialReason {
		if reason == "" {
			continue
		}
		metrics.LabeledCounterFunc(reg, "acl_denied_total", "Commands refused with NOPERM by the user's "+
			"permissions: the command, a key or a channel.", prometheus.Labels{"reason": reason},
			func() float64 { return float64(st.Denied[d].Load()) })
	}
	metrics.CounterFunc(reg, "protected_mode_refused_total", "Clients refused by protected mode.",
		func() float64 { return float64(st.ProtectedRefused.Load()) })
	metrics.CounterFunc(reg, "protocol_errors_total", "Client connections closed for a protocol error.",
		func() float64 { return float64(st.ProtocolErrors.Load()) })
	for limit, get := range map[string]func() int64{
		"max_clients":      st.ClientsRejected.Load,
		"query_buffer":     st.QueryBufferClosed.Load,
		"output_buffer":    st.OutputLimitClosed.Load,
		"max_leased_conns": func() int64 { return s.BackendStats().LeasesRefused },
	} {
		metrics.LabeledCounterFunc(reg, "limit_rejections_total", "What a limit turned away: clients refused at "+
			"max_clients, clients closed at the query buffer or client_output_buffer_limit, connections not "+
			"leased because max_leased_conns to the node were in use (a command refused, or a subscription "+
			"relink or blocked client's unblock retried later).", prometheus.Labels{"limit": limit},
			func() float64 { return float64(get()) })
	}
	metrics.CounterFunc(reg, "client_idle_closed_total", "Client connections closed by idle_timeout.",
		func() float64 { return float64(st.IdleClosed.Load()) })
	metrics.GaugeFunc(reg, "blocked_clients", "Clients waiting in a blocking command (BLPOP, XREAD BLOCK, ...).",
		func() float64 { return float64(st.Blocked.Load()) })
	metrics.CounterFunc(reg, "blocked_put_back_total",
		"Elements a blocking command popped for a client that had left, put back where they were.",
		func() float64 { return float64(st.PutBack.Load()) })
	for _, m := range []struct {
		name, help string
		get        func() int64
	}{
		{"backend_moved_total", "MOVED replies followed inside the proxy.", func() int64 { return s.BackendStats().Moved }},
		{"backend_ask_total", "ASK replies followed inside the proxy.", func() int64 { return s.BackendStats().Ask }},
		{"backend_failed_total", "Requests answered with a proxy error (deadline passed, connection lost).",
			func() int64 { return s.BackendStats().Failed }},
		{"backend_connections_lost_total", "Open backend connections that closed unexpectedly.",
			func() int64 { return s.BackendStats().ConnsLost }},
		{"backend_dial_errors_total", "Failed connection attempts to cluster nodes.",
			func() int64 { return s.BackendStats().DialErrors }},
	} {
		get := m.get
		metrics.CounterFunc(reg, m.name, m.help, func() float64 { return float64(get()) })
	}
	for r := range backend.NumRetryReasons {
		metrics.LabeledCounterFunc(reg, "backend_retries_total", "Requests sent again after a backoff, by "+
			"reason: the node's TRYAGAIN, LOADING, CLUSTERDOWN, READONLY or MASTERDOWN reply, or the node "+
			"unreachable (connection lost or refused).", prometheus.Labels{"reason": r.String()},
			func() float64 { return float64(s.BackendStats().Retries[r]) })
	}
	peerStat := func(get func(*topology.Peers) float64) func() float64 {
		return func() float64 {
			if p := s.peers.Load(); p != nil {
				return get(p)
			}
			return 0
		}
	}
	metrics.GaugeFunc(reg, "peers_members", "Live proxies of the fleet, this one included; 0 without peers.",
		peerStat(func(p *topology.Peers) float64 { return float64(p.Members()) }))
	for i, state := range []string{"alive", "dead"} {
		metrics.LabeledGaugeFunc(reg, "peers", "Proxies of the fleet: alive (this one included), and dead "+
			"(found dead in the last hour and not back; a proxy that left is not dead).",
			prometheus.Labels{"state": state}, peerStat(func(p *topology.Peers) float64 {
				var n [2]int
				n[0], n[1] = p.MemberCounts()
				return float64(n[i])
			}))
	}
	metrics.CounterFunc(reg, "peers_hints_received_total", "Topology hints heard from other proxies.",
		peerStat(func(p *topology.Peers) float64 { return float64(p.Stats().HintsReceived.Load()) }))
	metrics.CounterFunc(reg, "peers_hint_refreshes_total", "Refreshes from the cluster asked for by a peer's hint.",
		peerStat(func(p *topology.Peers) float64 { return float64(p.Stats().HintRefreshes.Load()) }))
	for result, n := range map[string]*atomic.Int64{"ok": &st.Reloads, "failed": &st.ReloadsFailed} {
		metrics.LabeledCounterFunc(reg, "config_reloads_total", "Configuration reloads (SIGHUP): applied, or "+
			"refused because the file could not be read or was not valid.", prometheus.Labels{"result": result},
			func() float64 { return float64(n.Load()) })
	}
	metrics.CounterFunc(reg, "topology_polls_skipped_total", "Periodic slot map refreshes left to the fleet's poller.",
		func() float64 {
			if m, ok := s.topo.(*topology.Manager); ok {
				return float64(m.Stats().Skipped)
			}
			return 0
		})
	reg.MustRegister(newCommandCollector(s), newNodeCollector(s))
	metrics.CounterFunc(reg, "client_read_bytes_total", "Bytes read from clients.",
		func() float64 { in, _ := s.clientBytes(); return float64(in) })
	metrics.CounterFunc(reg, "client_written_bytes_total", "Bytes written to clients.",
		func() float64 { _, out := s.clientBytes(); return float64(out) })
	metrics.GaugeFunc(reg, "ready", "1 while /readyz answers 200: a slot map whose masters all answer PING, and "+
		"not draining; 0 otherwise.", func() float64 {
		if s.NotReady() == nil {
			return 1
		}
		return 0
	})
	registerTopologyMetrics(reg, s)
	metrics.GaugeFunc(reg, "slot_map_version", "Version of the slot map in use; 0 before the first one.",
		func() float64 {
			if snap := s.topo.Snapshot(); snap != nil {
				return float64(snap.Version)
			}
			return 0
		})
}

// commandCollector exports the per-command counters and latency histograms of every loop, summed at scrape
// time; commands never called have no series.
type commandCollector struct {
	s                  *Server
	requests, duration *prometheus.Desc
}

func newCommandCollector(s *Server) *commandCollector {
	return &commandCollector{s: s,
		requests: prometheus.NewDesc(metrics.Namespace+"_requests_total",
			"Client commands answered, by command and outcome: ok, rejected (answered with an error by the "+
				"proxy without reaching a node), error (an error reply of a node, or an error the proxy made after "+
				"sending), deadline (of error: the request's deadline passed).", []string{"command", "outcome"}, nil),
		duration: prometheus.NewDesc(metrics.Namespace+"_request_duration_seconds",
			"Client-seen latency by command: from parsing to the reply being ready, blocking and retries included.",
			[]string{"command"}, nil),
	}
}

func (c *commandCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.duration
}

func (c *commandCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.commandTotals() {
		name := t.cmd.Name
		ok := t.calls - t.rejected - t.failed
		for _, o := range []struct {
			label string
			n     uint64
		}{{"ok", ok}, {"rejected", t.rejected}, {"error", t.failed - t.deadline}, {"deadline", t.deadline}} {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(o.n), name, o.label)
		}
		buckets := make(map[float64]uint64, len(latencyBounds))
		var cum uint64
		for i, b := range latencyBounds {
			cum += t.buckets[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, t.calls, float64(t.ns)/1e9, buckets, name)
	}
}

// registerTopologyMetrics exports what the proxy knows of the cluster and how its slot map is kept.
func registerTopologyMetrics(reg prometheus.Registerer, s *Server) {
	manager := func(get func(topology.Stats) float64) func() float64 {
		return func() float64 {
			if m, ok := s.topo.(*topology.Manager); ok {
				return get(m.Stats())
			}
			return 0
		}
	}
	for reason, get := range map[string]func(topology.Stats) uint64{
		"bootstrap": func(st topology.Stats) uint64 { return st.Bootstrap },
		"periodic":  func(st topology.Stats) uint64 { return st.Periodic },
		"requested": func(st topology.Stats) uint64 { return st.Requested },
		"retry":     func(st topology.Stats) uint64 { return st.Retries },
	} {
		metrics.LabeledCounterFunc(reg, "topology_refreshes_total", "Slot map refresh rounds by what started "+
			"them: the first map, the period, evidence from requests (MOVED, lost nodes) or a peer, a retry.",
			prometheus.Labels{"reason": reason}, manager(func(st topology.Stats) float64 { return float64(get(st)) }))
	}
	metrics.CounterFunc(reg, "topology_refresh_failures_total", "Refresh rounds in which no node gave a full map.",
		manager(func(st topology.Stats) float64 { return float64(st.Failures) }))
	metrics.GaugeFunc(reg, "topology_last_refresh_age_seconds", "Seconds since the last refresh that read a full "+
		"map; -1 before the first.", manager(func(st topology.Stats) float64 {
		if st.LastOK.IsZero() {
			return -1
		}
		return time.Since(st.LastOK).Seconds()
	}))
	snap := func(get func(*topology.Snapshot) float64) func() float64 {
		return func() float64 {
			if sn := s.topo.Snapshot(); sn != nil {
				return get(sn)
			}
			return 0
		}
	}
	metrics.GaugeFunc(reg, "topology_config_epoch", "The highest config epoch of the slot map in use.",
		snap(func(sn *topology.Snapshot) float64 { return float64(sn.Epoch) }))
	metrics.GaugeFunc(reg, "topology_masters", "Masters in the slot map in use.",
		snap(func(sn *topology.Snapshot) float64 { return float64(len(sn.Shards)) }))
	metrics.GaugeFunc(reg, "topology_replicas", "Replicas in the slot map in use.",
		snap(func(sn *topology.Snapshot) float64 { return float64(len(sn.Nodes) - len(sn.Shards)) }))
	metrics.GaugeFunc(reg, "topology_slots_covered", "Slots the map in use routes to a master (16384 once there is one).",
		snap(func(sn *topology.Snapshot) float64 { return float64(len(sn.Slots)) }))
}

// nodeCollector exports what the loops' pools did with each node, by address and role (master, replica,
// or gone when the node left the map), gathered from the loops at scrape time.
type nodeCollector struct {
	s                                                    *Server
	replies, errors, dials, conns, inFlight, leased, lat *prometheus.Desc
}

func newNodeCollector(s *Server) *nodeCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(metrics.Namespace+"_backend_node_"+name, help, []string{"addr", "role"}, nil)
	}
	return &nodeCollector{s: s,
		replies:  d("replies_total", "Replies read from the node on shared connections."),
		errors:   d("error_replies_total", "Of those, error replies (MOVED, ASK and TRYAGAIN included)."),
		dials:    d("dials_total", "Connections attempted to the node."),
		conns:    d("connections", "Open connections to the node."),
		inFlight: d("in_flight", "Requests written or queued to the node now."),
		leased:   d("leased_connections", "Connections to the node held by one client now (transactions, blocking commands, subscriptions)."),
		lat:      d("reply_duration_seconds", "From the write of a request to the node's reply."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.replies, c.errors, c.dials, c.conns, c.inFlight, c.leased, c.lat} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	roles := map[string]string{}
	if snap := c.s.topo.Snapshot(); snap != nil {
		for _, sh := range snap.Shards {
			roles[snap.Nodes[sh.Master].Addr] = "master"
			for _, r := range sh.Replicas {
				roles[snap.Nodes[r].Addr] = "replica"
			}
		}
	}
	for addr, st := range c.s.NodeStats() {
		role := roles[addr]
		if role == "" {
			role = "gone"
		}
		ch <- prometheus.MustNewConstMetric(c.replies, prometheus.CounterValue, float64(st.Replies), addr, role)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.ErrorReplies), addr, role)
		ch <- prometheus.MustNewConstMetric(c.dials, prometheus.CounterValue, float64(st.Dials), addr, role)
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(st.Conns), addr, role)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(st.InFlight), addr, role)
		ch <- prometheus.MustNewConstMetric(c.leased, prometheus.GaugeValue, float64(st.Leased), addr, role)
		buckets := make(map[float64]uint64, len(latencyBounds))
		var cum, count uint64
		for i := range st.Buckets {
			count += st.Buckets[i]
		}
		for i, b := range latencyBounds {
			cum += st.Buckets[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.lat, count, float64(st.LatencyNs)/1e9, buckets, addr, role)
	}
}
