package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotproxy/slotproxy/metrics"
)

// RegisterMetrics exports the server's counters; they are read at scrape time only.
func RegisterMetrics(reg prometheus.Registerer, s *Server) {
	st := &s.stats
	metrics.GaugeFunc(reg, "client_connections", "Clients connected now.",
		func() float64 { return float64(st.Clients.Load()) })
	metrics.CounterFunc(reg, "client_connections_total", "Clients accepted since start.",
		func() float64 { return float64(st.ClientsTotal.Load()) })
	metrics.CounterFunc(reg, "client_rejected_total", "Clients refused at max_clients.",
		func() float64 { return float64(st.ClientsRejected.Load()) })
	metrics.CounterFunc(reg, "commands_total", "Commands answered, local and forwarded.",
		func() float64 { return float64(st.Commands.Load()) })
	metrics.CounterFunc(reg, "protocol_errors_total", "Client connections closed for a protocol error.",
		func() float64 { return float64(st.ProtocolErrors.Load()) })
	metrics.CounterFunc(reg, "query_buffer_closed_total", "Client connections closed at the query buffer limit.",
		func() float64 { return float64(st.QueryBufferClosed.Load()) })
	metrics.GaugeFunc(reg, "slot_map_version", "Version of the slot map in use; 0 before the first one.",
		func() float64 {
			if snap := s.topo.Snapshot(); snap != nil {
				return float64(snap.Version)
			}
			return 0
		})
}
