package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// getCalls is a node's cmdstat_get calls (INFO commandstats).
func getCalls(t *testing.T, addr string) int {
	t.Helper()
	info, _, err := rawDo(addr, 2*time.Second, "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_get:calls=(\d+)`).FindSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestReloadOnSIGHUP: the proxy binary with timeout 20s and read_from master; one client pipelines GETs of
// a key throughout. The file is changed to timeout 1s and read_from replica and the proxy gets SIGHUP: the
// GETs move to the replica, a SET to a master that holds writes (CLIENT PAUSE WRITE) fails after 1 s, not
// 20 s. Then a broken file and SIGHUP: the failure is counted (metric and INFO), and the running
// configuration stays. The pipelining client sees no error and keeps its connection.
func TestReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	_, probe := startProxyOpt(t, cl.Addrs(), false)
	snap := snapshotOf(probe)
	readKey, writeKey := keyInShard(snap, 0), keyInShard(snap, 1)
	readMaster, readReplica := snap.Nodes[snap.Shards[0].Master].Addr, snap.Nodes[snap.Shards[0].Replicas[0]].Addr
	writeMaster := snap.Nodes[snap.Shards[1].Master].Addr

	addr, metricsAddr := addrOf(redistest.FreePort(t)), addrOf(redistest.FreePort(t))
	base := fmt.Sprintf("listen: %s\nmetrics: %s\nseeds: [%s]\nevent_loops: 2\n", addr, metricsAddr,
		strings.Join(cl.Addrs(), ", "))
	p := runBinary(t, base+"timeout: 20s\nread_from: master\n")
	p.waitServes(t, addr)
	mustDo(t, addr, "SET", readKey, "v")

	// The pipelining client: batches of 10 GETs, every reply checked, until the test ends.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var batches, bad atomic.Int64
	var lastBad atomic.Value
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(c)
		req := strings.Repeat(fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(readKey), readKey), 10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(req)); err != nil {
				bad.Add(1)
				lastBad.Store(err.Error())
				return
			}
			for range 10 {
				line, err := r.ReadString('\n')
				if err == nil && line == "$1\r\n" {
					line, err = r.ReadString('\n')
				}
				if err != nil || line != "v\r\n" {
					bad.Add(1)
					lastBad.Store(fmt.Sprintf("%q %v", line, err))
					if err != nil {
						return
					}
				}
			}
			batches.Add(1)
		}
	}()
	defer func() { close(stop); <-done; c.Close() }()

	moving := func(node string) bool {
		a := getCalls(t, node)
		time.Sleep(300 * time.Millisecond)
		return getCalls(t, node) > a+10
	}
	if !moving(readMaster) || moving(readReplica) {
		t.Fatal("before the reload the GETs should go to the master only")
	}

	reload := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(p.cfgPath, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reload(base + "timeout: 1s\nread_from: replica\n")
	p.waitFor(t, 5*time.Second, "the reload logged", func() error {
		if !strings.Contains(p.Log(), `msg="configuration reloaded"`) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if !strings.Contains(p.Log(), `changed=timeout,read_from need_restart=""`) {
		t.Errorf("the reload line does not name the changed keys:\n%s", p.Log())
	}
	p.waitFor(t, 3*time.Second, "GETs on the replica", func() error {
		if !moving(readReplica) || moving(readMaster) {
			return fmt.Errorf("GETs still on the master")
		}
		return nil
	})

	checkTimeout := func(when string) {
		t.Helper()
		if got, _, err := rawDo(writeMaster, 2*time.Second, "CLIENT", "PAUSE", "3000", "WRITE"); err != nil || string(got) != "+OK\r\n" {
			t.Fatalf("CLIENT PAUSE: %q %v", got, err)
		}
		got, took, err := rawDo(addr, 10*time.Second, "SET", writeKey, "x")
		_, _, _ = rawDo(writeMaster, 2*time.Second, "CLIENT", "UNPAUSE")
		if err != nil || !strings.HasPrefix(string(got), "-") || took < 900*time.Millisecond || took > 2500*time.Millisecond {
			t.Errorf("%s: a SET to a paused master answered %q after %v (%v), want an error after the 1 s timeout",
				when, got, took, err)
		}
	}
	checkTimeout("after the reload")

	reload(base + "timeout: fast\n")
	p.waitFor(t, 5*time.Second, "the refused reload counted", func() error {
		m := getMetrics(t, "http://"+metricsAddr)
		if v := m.values[`slotproxy_config_reloads_total{result="failed"}`]; v != 1 {
			return fmt.Errorf("failed reloads %v, want 1", v)
		}
		if v := m.values[`slotproxy_config_reloads_total{result="ok"}`]; v != 1 {
			return fmt.Errorf("applied reloads %v, want 1", v)
		}
		return nil
	})
	if !strings.Contains(p.Log(), `msg="reload refused; the running configuration stays"`) {
		t.Errorf("the refused reload was not logged:\n%s", p.Log())
	}
	if info := string(mustDo(t, addr, "INFO", "proxy")); infoField(info, "proxy_config_reload_failures") != "1" ||
		infoField(info, "proxy_config_reloads") != "1" {
		t.Errorf("INFO proxy: %q", info)
	}
	if !moving(readReplica) {
		t.Error("after a refused reload the GETs left the replica")
	}
	checkTimeout("after the refused reload")

	if n := bad.Load(); n > 0 {
		t.Errorf("the pipelining client saw %d bad replies, the last %v", n, lastBad.Load())
	}
	t.Logf("the pipelining client got %d batches of 10 GETs, every one right, on one connection", batches.Load())
}

// TestReloadLeaseLimit: max_leased_conns applies on reload. At 1, a second client's BLPOP on the shard whose
// one leased connection a first BLPOP holds is refused with the limit's error (counted in LeasesRefused);
// back at 1000, it blocks like the first.
func TestReloadLeaseLimit(t *testing.T) {
	_, _, cl := shared(t)
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.EventLoops = 1 })
	key := keyInShard(snapshotOf(srv), 0)
	reload := func(n int) {
		cfg := srv.Config()
		cfg.MaxLeasedConns = n
		if changed, restart := srv.Reload(&cfg); !slices.Equal(changed, []string{"max_leased_conns"}) || len(restart) > 0 {
			t.Fatalf("reload of max_leased_conns %d: changed %v, restart %v", n, changed, restart)
		}
	}
	reload(1)
	first := dialRaw(t, addr)
	first.send(resp.AppendCommandStrings(nil, "BLPOP", "{"+key+"}:a", "0"))
	eventually(t, 5*time.Second, "the first BLPOP holds the lease", func() bool { return leasedConns(srv) == 1 })
	second := dialRaw(t, addr)
	got := string(second.do("BLPOP", "{"+key+"}:b", "0"))
	if !strings.HasPrefix(got, "-ERR max_leased_conns (1) connections to ") || srv.BackendStats().LeasesRefused != 1 {
		t.Fatalf("second BLPOP at max_leased_conns 1: %q, %d refused", got, srv.BackendStats().LeasesRefused)
	}
	reload(1000)
	second.send(resp.AppendCommandStrings(nil, "BLPOP", "{"+key+"}:b", "0"))
	eventually(t, 5*time.Second, "the second BLPOP holds a lease too", func() bool { return leasedConns(srv) == 2 })
	mustDo(t, addr, "RPUSH", "{"+key+"}:b", "x")
	if got := string(second.reply()); !strings.Contains(got, "x") {
		t.Errorf("second BLPOP after the reload: %q", got)
	}
}
