package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// failover is what the failover did and when (times since the load started).
type failover struct {
	mode      string // "SIGKILL", "CLUSTER FAILOVER" or "none"
	victim    string // the master that was killed or demoted
	replica   string // its replica, promoted
	ranges    string // the victim's slots
	pid       int
	slots     [16384]bool // slots of the victim's shard when it was chosen
	haveSlots bool

	at, promoted, restarted, rejoined time.Duration
	events                            []string // the timeline, for the report
	problems                          []string // steps that did not go as they should
}

func (f *failover) event(t0 time.Time, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.events = append(f.events, fmt.Sprintf("%7.1fs %s", time.Since(t0).Seconds(), msg))
	logf("failover: %s", msg)
}

func (f *failover) problem(t0 time.Time, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	f.problems = append(f.problems, msg)
	f.event(t0, "PROBLEM: %s", msg)
}

func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// role is INFO replication's role (master, slave) of addr and, for a replica, master_port and
// master_link_status.
func role(addr string) (r, masterPort, link string, err error) {
	c := nodeClient(addr)
	defer c.Close()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return "", "", "", err
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "role":
			r = v
		case "master_port":
			masterPort = v
		case "master_link_status":
			link = v
		}
	}
	return r, masterPort, link, nil
}

// chooseVictim picks the master of slot 0 and its first replica from CLUSTER SLOTS of the first seed that
// answers.
func (f *failover) chooseVictim(seeds []string) error {
	var slots []redis.ClusterSlot
	var err error
	for _, s := range seeds {
		c := nodeClient(s)
		slots, err = c.ClusterSlots(context.Background()).Result()
		c.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	for _, r := range slots {
		if r.Start == 0 && len(r.Nodes) > 0 {
			f.victim = r.Nodes[0].Addr
			if len(r.Nodes) > 1 {
				f.replica = r.Nodes[1].Addr
			}
		}
	}
	if f.victim == "" {
		return fmt.Errorf("CLUSTER SLOTS names no master of slot 0")
	}
	if f.replica == "" {
		return fmt.Errorf("the master of slot 0, %s, has no replica", f.victim)
	}
	var ranges []string
	for _, r := range slots {
		if len(r.Nodes) > 0 && r.Nodes[0].Addr == f.victim {
			for s := r.Start; s <= r.End; s++ {
				f.slots[s] = true
			}
			ranges = append(ranges, fmt.Sprintf("%d-%d", r.Start, r.End))
		}
	}
	f.ranges, f.haveSlots = strings.Join(ranges, ","), true
	return nil
}

// pidOfPort is the pid of the redis-server on port: the pidfile deploy/cluster.sh keeps in dir/PORT/, trusted
// only if that process is a redis-server whose title names the port.
func pidOfPort(dir, port string) (int, error) {
	f := filepath.Join(dir, port, "redis.pid")
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %v", f, err)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	title, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if strings.TrimSpace(string(comm)) != "redis-server" || !strings.Contains(string(title), ":"+port+" ") {
		return 0, fmt.Errorf("pid %d (from %s) is not the redis-server of port %s (comm %q, title %q)", pid, f,
			port, strings.TrimSpace(string(comm)), strings.TrimRight(string(title), "\x00"))
	}
	return pid, nil
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// run fails the master of slot 0 over to its replica: SIGKILL (or CLUSTER FAILOVER on the replica), waits for
// the promotion, then restarts the killed master with cfg.restartCmd and waits until it is the new master's
// replica. It moves the global phase along.
func (f *failover) run(cfg *config, t0 time.Time) {
	defer phase.Store(phaseAfter)
	if err := f.chooseVictim(cfg.seeds); err != nil {
		f.mode = "none"
		f.problem(t0, "no failover: %v", err)
		return
	}
	_, victimPort, _ := net.SplitHostPort(f.victim)
	_, replicaPort, _ := net.SplitHostPort(f.replica)
	f.mode = cfg.failover
	if f.mode == "kill" {
		pid, err := pidOfPort(cfg.clusterDir, victimPort)
		if err != nil {
			f.problem(t0, "cannot SIGKILL the master %s (%v): CLUSTER FAILOVER on its replica instead", f.victim, err)
			f.mode = "manual"
		} else {
			f.pid = pid
		}
	}

	f.at = time.Since(t0)
	phase.Store(phaseFailover)
	if f.mode == "kill" {
		f.mode = "SIGKILL"
		if err := syscall.Kill(f.pid, syscall.SIGKILL); err != nil {
			f.problem(t0, "kill -9 %d: %v", f.pid, err)
			return
		}
		f.event(t0, "SIGKILL of master %s (pid %d, slots %s); its replica is %s", f.victim, f.pid, f.ranges, f.replica)
	} else {
		f.mode = "CLUSTER FAILOVER"
		c := nodeClient(f.replica)
		err := c.ClusterFailover(context.Background()).Err()
		c.Close()
		if err != nil {
			f.problem(t0, "CLUSTER FAILOVER on %s: %v", f.replica, err)
			return
		}
		f.event(t0, "CLUSTER FAILOVER on replica %s of master %s (slots %s)", f.replica, f.victim, f.ranges)
	}
	if !waitFor(60*time.Second, func() bool { r, _, _, _ := role(f.replica); return r == "master" }) {
		f.problem(t0, "the replica %s is not a master 60s after the failover began", f.replica)
		return
	}
	f.promoted = time.Since(t0)
	f.event(t0, "%s is master (%.1fs after the failover began)", f.replica, (f.promoted - f.at).Seconds())
	time.Sleep(time.Second)
	phase.Store(phaseBetween)
	if f.mode != "SIGKILL" {
		if waitFor(30*time.Second, func() bool {
			r, mp, link, _ := role(f.victim)
			return r == "slave" && mp == replicaPort && link == "up"
		}) {
			f.rejoined = time.Since(t0)
			f.event(t0, "%s is a replica of %s", f.victim, f.replica)
		} else {
			f.problem(t0, "%s is not a replica of %s with its link up 30s after the promotion", f.victim, f.replica)
		}
		return
	}
	if len(cfg.restartCmd) == 0 {
		f.problem(t0, "no restart command given: %s stays down", f.victim)
		return
	}
	time.Sleep(cfg.restartAfter)

	phase.Store(phaseRejoin)
	f.restarted = time.Since(t0)
	f.event(t0, "restarting %s: %s", f.victim, strings.Join(cfg.restartCmd, " "))
	cmd := exec.Command(cfg.restartCmd[0], cfg.restartCmd[1:]...)
	var logw *os.File
	if cfg.restartLog != "" {
		if lf, err := os.Create(cfg.restartLog); err == nil {
			logw = lf
			defer lf.Close()
		}
	}
	var outBuf strings.Builder
	if logw != nil {
		cmd.Stdout, cmd.Stderr = logw, logw
	} else {
		cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	}
	if err := cmd.Run(); err != nil {
		where := cfg.restartLog
		if where == "" {
			where = outBuf.String()
		}
		f.problem(t0, "the restart command failed: %v (output: %s)", err, where)
		return
	}
	if !waitFor(60*time.Second, func() bool {
		r, mp, link, _ := role(f.victim)
		return r == "slave" && mp == replicaPort && link == "up"
	}) {
		r, mp, link, err := role(f.victim)
		f.problem(t0, "%s is not a replica of %s with its link up 60s after the restart (role %q, master_port %q, link %q, %v)",
			f.victim, f.replica, r, mp, link, err)
		return
	}
	f.rejoined = time.Since(t0)
	f.event(t0, "%s rejoined as a replica of %s, link up (%.1fs after the restart)", f.victim, f.replica,
		(f.rejoined - f.restarted).Seconds())
	time.Sleep(time.Second)
}
