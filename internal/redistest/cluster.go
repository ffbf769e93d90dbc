package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClusterOptions shape a cluster. The zero value is 3 masters without replicas.
type ClusterOptions struct {
	Masters     int           // default 3
	Replicas    int           // per master
	NodeTimeout time.Duration // cluster-node-timeout, default 2s
	Password    string        // requirepass and masterauth of every node
	ExtraArgs   []string      // more redis-server options for every node
	// TLS: every node also listens with TLS (Server.TLSAddr), on the bus too (tls-cluster, tls-replication),
	// with these files; clients of the TLS port must show a certificate the CA signed. The plain port stays
	// for the test's own tools.
	TLS *TLSFiles
}

// Cluster is a running Redis Cluster on loopback.
type Cluster struct {
	Nodes []*Server // in creation order: the masters first, then the replicas
}

// StartCluster starts the nodes in parallel (cluster-enabled, each with an explicit cluster-port), creates
// the cluster with redis-cli --cluster create (by hand with CLUSTER ADDSLOTSRANGE/MEET/REPLICATE when there
// are fewer than the 3 masters redis-cli insists on), and waits until it is healthy (see WaitHealthy). Every
// node is stopped when the test ends.
func StartCluster(t testing.TB, opt ClusterOptions) *Cluster {
	t.Helper()
	if opt.Masters <= 0 {
		opt.Masters = 3
	}
	if opt.NodeTimeout <= 0 {
		opt.NodeTimeout = 2 * time.Second
	}
	args := append([]string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opt.NodeTimeout.Milliseconds(), 10),
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", // replicas sync at once, not after 5 s
		// CLUSTER SLOTS lists a replica only once its replication offset is not 0. Without writes that takes
		// the first replication PING: 10 s by default.
		"--repl-ping-replica-period", "1",
	}, opt.ExtraArgs...)
	n := opt.Masters * (1 + opt.Replicas)
	c := &Cluster{}
	for range n {
		nodeArgs := args
		var tlsPort int
		if f := opt.TLS; f != nil {
			tlsPort = FreePort(t)
			nodeArgs = append(slices.Clone(args), "--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", f.ServerCert,
				"--tls-key-file", f.ServerKey, "--tls-ca-cert-file", f.CA, "--tls-cluster", "yes",
				"--tls-replication", "yes")
		}
		s := newServer(t, 0, true, nodeArgs)
		s.Password = opt.Password
		if tlsPort != 0 {
			s.TLSPort, s.TLSAddr = tlsPort, net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
		}
		c.Nodes = append(c.Nodes, s)
	}
	// Stop every node at once at the end (registered last, so it runs before the per-server cleanups).
	t.Cleanup(c.stopAll)

	// Start all processes first, then wait for each: start-up overlaps.
	for _, s := range c.Nodes {
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.Nodes {
		if err := s.waitReady(10 * time.Second); err != nil {
			if !errors.Is(err, errPortInUse) {
				t.Fatal(err)
			}
			s.setPort(FreePort(t))
			s.BusPort = FreePort(t)
			s.launch(t)
		}
	}

	if opt.Masters >= 3 {
		c.createWithRedisCLI(t, opt)
	} else {
		c.createByHand(t, opt)
	}
	c.WaitHealthy(t, 30*time.Second)
	return c
}

func (c *Cluster) createWithRedisCLI(t testing.TB, opt ClusterOptions) {
	t.Helper()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opt.Replicas), "--cluster-yes")
	if f := opt.TLS; f != nil { // the bus speaks TLS: redis-cli reaches the nodes over their TLS ports
		args = slices.Concat([]string{"--cluster", "create"}, c.TLSAddrs(), args[2+len(c.Nodes):],
			[]string{"--tls", "--cacert", f.CA, "--cert", f.ClientCert, "--key", f.ClientKey})
	}
	if opt.Password != "" {
		args = append(args, "-a", opt.Password, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s\n%s", strings.Join(args, " "), err, out, c.logTails(10))
	}
}

// TLSAddrs are the nodes' TLS addresses, in Nodes order (empty without ClusterOptions.TLS).
func (c *Cluster) TLSAddrs() []string {
	var out []string
	for _, s := range c.Nodes {
		if s.TLSAddr != "" {
			out = append(out, s.TLSAddr)
		}
	}
	return out
}

// createByHand builds a cluster of fewer than 3 masters: slots split evenly, every node MEETs the first,
// replicas assigned round-robin.
func (c *Cluster) createByHand(t testing.TB, opt ClusterOptions) {
	t.Helper()
	do := func(s *Server, args ...string) {
		t.Helper()
		if _, err := s.Do(args...); err != nil {
			t.Fatalf("%s %v: %v", s.Addr, args, err)
		}
	}
	for i, s := range c.Nodes[:opt.Masters] {
		lo, hi := i*16384/opt.Masters, (i+1)*16384/opt.Masters-1
		do(s, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
		do(s, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	first := c.Nodes[0]
	for _, s := range c.Nodes[1:] {
		do(s, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(first.Port), strconv.Itoa(first.BusPort))
	}
	ids := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		id, err := s.DoString("CLUSTER", "MYID")
		if err != nil {
			t.Fatalf("%s CLUSTER MYID: %v", s.Addr, err)
		}
		ids[i] = id
	}
	WaitFor(t, 20*time.Second, "every node knows every other", func() error {
		for _, s := range c.Nodes {
			nodes, err := s.DoString("CLUSTER", "NODES")
			if err != nil {
				return err
			}
			for _, id := range ids {
				if !strings.Contains(nodes, id) {
					return fmt.Errorf("%s does not know %s yet", s.Addr, id)
				}
			}
			if strings.Contains(nodes, "handshake") || strings.Contains(nodes, "noaddr") {
				return fmt.Errorf("%s: handshakes in progress", s.Addr)
			}
		}
		return nil
	})
	for i, s := range c.Nodes[opt.Masters:] {
		do(s, "CLUSTER", "REPLICATE", ids[i%opt.Masters])
	}
}

// Addrs lists every node's address in creation order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// Masters returns the running nodes that serve slots now according to CLUSTER SLOTS (asked of the first
// running node that answers), ordered by their lowest slot. A master that owns no slot is not listed.
func (c *Cluster) Masters() []*Server {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		ranges, err := clusterSlots(s)
		if err != nil {
			continue
		}
		var out []*Server
		for _, r := range ranges {
			if m := c.Node(r.nodes[0]); m != nil && m.Running() && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

// Replicas returns the running nodes that say they are replicas (INFO replication).
func (c *Cluster) Replicas() []*Server {
	var out []*Server
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		if r, err := replicationOf(s); err == nil && r.role == "slave" {
			out = append(out, s)
		}
	}
	return out
}

// WaitHealthy waits until the running nodes agree on a healthy cluster, and fails the test (quoting every
// node's log) after timeout. Healthy means: every running node says cluster_state:ok; every running node's
// CLUSTER SLOTS covers all 16384 slots with the same master for each range, and that master runs and says
// role:master; every other running node is a replica (INFO replication) whose master link is up; and every
// range lists at least the replicas attached to its master (CLUSTER SLOTS leaves out replicas that have not
// synced yet).
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := poll(timeout, c.health); err != nil {
		t.Fatalf("redistest: cluster not healthy after %v: %v\n%s", timeout, err, c.logTails(10))
	}
}

func (c *Cluster) health() error {
	type repl struct {
		role, master string
	}
	roles := map[string]repl{}
	attached := map[string]int{} // master addr → replicas with link up
	var running []*Server
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		running = append(running, s)
		r, err := replicationOf(s)
		if err != nil {
			return fmt.Errorf("%s INFO replication: %w", s.Addr, err)
		}
		if r.role == "slave" {
			if r.link != "up" {
				return fmt.Errorf("replica %s: link to master %s is %s", s.Addr, r.master, r.link)
			}
			attached[r.master]++
		}
		roles[s.Addr] = repl{r.role, r.master}
	}
	if len(running) == 0 {
		return errors.New("no node is running")
	}
	var view string
	var viewFrom string
	for _, s := range running {
		info, err := s.DoString("CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("%s CLUSTER INFO: %w", s.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", s.Addr)
		}
		ranges, err := clusterSlots(s)
		if err != nil {
			return fmt.Errorf("%s CLUSTER SLOTS: %w", s.Addr, err)
		}
		covered := 0
		var parts []string
		owners := map[string]bool{}
		for _, r := range ranges {
			covered += r.hi - r.lo + 1
			m := r.nodes[0]
			parts = append(parts, fmt.Sprintf("%d-%d@%s", r.lo, r.hi, m))
			owners[m] = true
			if roles[m].role != "master" {
				return fmt.Errorf("%s: slots %d-%d are served by %s, which is not a running master", s.Addr, r.lo, r.hi, m)
			}
			if listed := len(r.nodes) - 1; listed < attached[m] {
				return fmt.Errorf("%s: slots %d-%d list %d replicas of %s, %d are attached", s.Addr, r.lo, r.hi,
					listed, m, attached[m])
			}
		}
		if covered != 16384 {
			return fmt.Errorf("%s: CLUSTER SLOTS covers %d slots", s.Addr, covered)
		}
		for addr, r := range roles {
			if r.role == "master" && !owners[addr] {
				return fmt.Errorf("%s: master %s serves no slots", s.Addr, addr)
			}
		}
		v := strings.Join(parts, " ")
		if view != "" && v != view {
			return fmt.Errorf("nodes disagree: %s says %s; %s says %s", viewFrom, view, s.Addr, v)
		}
		view, viewFrom = v, s.Addr
	}
	return nil
}

type replication struct {
	role   string // master or slave
	master string // host:port, for a replica
	link   string // master_link_status, for a replica
}

func replicationOf(s *Server) (replication, error) {
	info, err := s.DoString("INFO", "replication")
	if err != nil {
		return replication{}, err
	}
	var r replication
	var host, port string
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "role":
			r.role = v
		case "master_host":
			host = v
		case "master_port":
			port = v
		case "master_link_status":
			r.link = v
		}
	}
	if host != "" {
		r.master = host + ":" + port
	}
	return r, nil
}

type slotRange struct {
	lo, hi int
	nodes  []string // master first
}

// clusterSlots runs CLUSTER SLOTS and returns the ranges sorted by first slot.
func clusterSlots(s *Server) ([]slotRange, error) {
	v, err := s.Do("CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	arr, _ := v.([]any)
	var out []slotRange
	for _, e := range arr {
		f, _ := e.([]any)
		if len(f) < 3 {
			return nil, fmt.Errorf("bad range %v", e)
		}
		lo, _ := f[0].(int64)
		hi, _ := f[1].(int64)
		r := slotRange{lo: int(lo), hi: int(hi)}
		for _, n := range f[2:] {
			nf, _ := n.([]any)
			if len(nf) < 2 {
				return nil, fmt.Errorf("bad node %v", n)
			}
			host, _ := nf[0].(string)
			if host == "" {
				host = "127.0.0.1"
			}
			port, _ := nf[1].(int64)
			r.nodes = append(r.nodes, host+":"+strconv.FormatInt(port, 10))
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	return out, nil
}

// stopAll stops every node in parallel.
func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, s := range c.Nodes {
		wg.Go(s.Stop)
	}
	wg.Wait()
}

func (c *Cluster) logTails(n int) string {
	var b strings.Builder
	for _, s := range c.Nodes {
		b.WriteString(s.LogTail(n))
	}
	return b.String()
}
