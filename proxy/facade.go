package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// The cluster facade (peers.cluster_facade): to a cluster-aware client the live proxies of the fleet are
// the masters of a Redis Cluster, each owning an equal share of the slots (topology.LayoutFacade). No
// proxy ever redirects: each serves every slot, so a client whose map is old is still served right, and
// one that refreshes finds the proxies that are alive now. Without the facade the proxy stays a standalone
// Redis to everybody, and these commands are refused as before.

// JoinPeers starts this proxy's membership in its fleet (cfg.Peers) and shows it in INFO, the metrics and,
// with the facade, CLUSTER. Call it once Serve listens: with the facade the others dial the client port as
// soon as they see this proxy. Close the Peers to leave.
func (s *Server) JoinPeers(log *slog.Logger) (*topology.Peers, error) {
	p := s.cfg.Peers
	pc := topology.PeersConfig{Bind: p.Bind, Advertise: p.Advertise, Join: p.Join, Secret: p.Secret,
		OldSecrets: p.AcceptSecrets, Profile: p.Profile, Logger: log}
	if !p.PollEveryone {
		pc.RefreshInterval = s.cfg.RefreshInterval.D()
	}
	if p.ClusterFacade {
		addr, err := s.announceAddr()
		if err != nil {
			return nil, err
		}
		pc.ClientAddr = addr
	}
	peers, err := topology.StartPeers(pc, s.topo)
	if err != nil {
		return nil, err
	}
	s.SetPeers(peers)
	return peers, nil
}

// announceAddr is where clients reach this proxy: peers.announce, else the listen address, whose host,
// if it is every interface, is the gossip address's.
func (s *Server) announceAddr() (string, error) {
	if a := s.cfg.Peers.Announce; a != "" {
		return a, nil
	}
	addr := s.cfg.Listen
	select {
	case <-s.booted:
		if s.addr != "" {
			addr = s.addr
		}
	default:
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port == "0" {
		return "", errors.New("peers.announce: needed for the cluster facade while the listen port is not known")
	}
	for _, a := range []string{host, s.cfg.Peers.Advertise, s.cfg.Peers.Bind} {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		if !unspecifiedHost(a) {
			return net.JoinHostPort(a, port), nil
		}
	}
	return "", errors.New("peers.announce: needed for the cluster facade when listen and peers.bind are " +
		"on every interface")
}

// facade is the facade's layout now, nil when it is off.
func (s *Server) facade() []topology.FacadeMember {
	p := s.peers.Load()
	if p == nil || !s.cfg.Peers.ClusterFacade {
		return nil
	}
	return topology.LayoutFacade(p.FacadeMembers())
}

func (s *Server) facadeOn() bool { return s.cfg.Peers.ClusterFacade && s.peers.Load() != nil }

// facadeCommand serves a CLUSTER subcommand from the facade, and refuses it without one.
func facadeCommand(serve func(s *session, f []topology.FacadeMember, args [][]byte) []byte) handler {
	return func(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
		f := s.l.srv.facade()
		if f == nil {
			s.local(errNotSupported(cmd))
			return
		}
		s.local(serve(s, f, args))
	}
}

func notSupported(cmd *command.Command) string {
	return "ERR '" + strings.ToUpper(strings.ReplaceAll(cmd.Name, "|", " ")) + "' is not supported by the proxy"
}

func errNotSupported(cmd *command.Command) []byte { return resp.AppendError(nil, notSupported(cmd)) }

func (s *session) facadeSlots(f []topology.FacadeMember, _ [][]byte) []byte {
	b := resp.AppendArrayHeader(nil, len(f))
	for _, m := range f {
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendInt(b, int64(m.First))
		b = resp.AppendInt(b, int64(m.Last))
		b = resp.AppendArrayHeader(b, 4)
		b = resp.AppendBulkString(b, m.Host)
		b = resp.AppendInt(b, int64(m.Port))
		b = resp.AppendBulkString(b, m.ID)
		b = s.appendMapHeader(b, 0)
	}
	return b
}

func (s *session) facadeShards(f []topology.FacadeMember, _ [][]byte) []byte {
	b := resp.AppendArrayHeader(nil, len(f))
	for _, m := range f {
		b = s.appendMapHeader(b, 2)
		b = resp.AppendBulkString(b, "slots")
		b = resp.AppendArrayHeader(b, 2)
		b = resp.AppendInt(b, int64(m.First))
		b = resp.AppendInt(b, int64(m.Last))
		b = resp.AppendBulkString(b, "nodes")
		b = resp.AppendArrayHeader(b, 1)
		b = s.appendMapHeader(b, 7)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "id"), m.ID)
		b = resp.AppendInt(resp.AppendBulkString(b, "port"), int64(m.Port))
		b = resp.AppendBulkString(resp.AppendBulkString(b, "ip"), m.Host)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "endpoint"), m.Host)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "role"), "master")
		b = resp.AppendInt(resp.AppendBulkString(b, "replication-offset"), 0)
		b = resp.AppendBulkString(resp.AppendBulkString(b, "health"), "online")
	}
	return b
}

func (s *session) facadeNodes(f []topology.FacadeMember, _ [][]byte) []byte {
	var text []byte
	now := time.Now().UnixMilli()
	for _, m := range f {
		flags := "master"
		if m.Self {
			flags = "myself,master"
		}
		// ip:port@cport as Redis prints it, an IPv6 address without brackets.
		text = fmt.Appendf(text, "%s %s:%d@%d %s - 0 %d %d connected %d-%d\n", m.ID, m.Host, m.Port,
			m.BusPort, flags, now, m.Epoch, m.First, m.Last)
	}
	return s.appendText(nil, text)
}

func (s *session) facadeInfo(f []topology.FacadeMember, _ [][]byte) []byte {
	mine := 0
	for _, m := range f {
		if m.Self {
			mine = m.Epoch
		}
	}
	st := s.l.srv.peers.Load().Stats()
	text := fmt.Appendf(nil, "cluster_state:ok\r\ncluster_slots_assigned:%d\r\ncluster_slots_ok:%d\r\n"+
		"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:%d\r\ncluster_size:%d\r\n"+
		"cluster_current_epoch:%d\r\ncluster_my_epoch:%d\r\ncluster_stats_messages_sent:%d\r\n"+
		"cluster_stats_messages_received:%d\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n",
		topology.NumSlots, topology.NumSlots, len(f), len(f), len(f), mine, st.HintsSent.Load(),
		st.HintsReceived.Load())
	return s.appendText(nil, text)
}

func (s *session) facadeMyID(f []topology.FacadeMember, _ [][]byte) []byte {
	for _, m := range f {
		if m.Self {
			return resp.AppendBulkString(nil, m.ID)
		}
	}
	return resp.AppendError(nil, "ERR this proxy has no client address in the cluster facade")
}

func (s *session) facadeKeyslot(_ []topology.FacadeMember, args [][]byte) []byte {
	return resp.AppendInt(nil, int64(topology.Slot(args[2])))
}

// cmdClusterSlotKeys forwards COUNTKEYSINSLOT and GETKEYSINSLOT to the master that serves the slot, after
// the checks Redis makes.
func cmdClusterSlotKeys(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	if !s.l.srv.facadeOn() {
		s.local(errNotSupported(cmd))
		return
	}
	slot, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		s.local(errNotInteger)
		return
	}
	invalid := "ERR Invalid slot"
	if len(args) > 3 {
		invalid = "ERR Invalid slot or number of keys"
		n, err := strconv.ParseInt(string(args[3]), 10, 64)
		if err != nil {
			s.local(errNotInteger)
			return
		}
		if n < 0 {
			slot = -1
		}
	}
	if slot < 0 || slot >= topology.NumSlots {
		s.local(resp.AppendError(nil, invalid))
		return
	}
	s.forwardSlot(cmd, args, raw, int(slot), now)
}

var errNotInteger = resp.AppendError(nil, "ERR value is not an integer or out of range")
