package proxy_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/loadgen"
	"github.com/slotproxy/slotproxy/internal/redistest"
)

// The scenarios that matter most (master killed, live reshard, grow and shrink) run twice: through the proxy
// with plain clients, and with go-redis's ClusterClient talking to the cluster directly (the best a
// cluster-aware client does). The proxy must have no more errors and no more lost writes.

// target is how a scenario's load reaches the cluster.
type target struct {
	name  string
	proxy bool
}

var targets = []target{{"proxy", true}, {"ClusterClient", false}}

// clientsFor returns the load's client factory: plain clients to the proxy, or one shared ClusterClient.
func clientsFor(tg target, proxyAddr string, cl *redistest.Cluster) func() redis.Cmdable {
	if tg.proxy {
		return plainClients(proxyAddr)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(),
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	return func() redis.Cmdable { return cc }
}

func startLoadWith(t *testing.T, newClient func() redis.Cmdable, prefix string) func() *loadgen.Result {
	t.Helper()
	stop := sync.OnceValue(loadgen.Run(loadgen.Config{Clients: loadClients, KeysPerWorker: 50, Prefix: prefix,
		NewClient: newClient}))
	// A test that fails before it stops its load must not leave 50 clients retrying dead nodes for the rest of
	// the run (they starve every later test of CPU and memory).
	t.Cleanup(func() { stop() })
	time.Sleep(time.Second)
	return stop
}

type row struct {
	scenario, client string
	errors, lost     int
	p99, max         time.Duration
}

var (
	rowsMu sync.Mutex
	rows   = map[string]map[string]row{} // scenario → client → row
)

// report records a target's outcome of a scenario and, once both targets ran, checks the proxy against
// ClusterClient and logs the README table rows.
//
// ClusterClient cannot run an MGET or MSET whose keys hash to different slots (Redis answers CROSSSLOT; the
// proxy splits them): those replies are counted apart, not as errors of the event. Lost writes count the
// losses excused does not excuse (nil: none), wrong replies and failed check reads.
func report(t *testing.T, scenario, client string, event loadgen.Summary, res *loadgen.Result,
	excused func(loadgen.Loss) bool) {
	errs, crossSlot := 0, 0
	for _, op := range res.Ops {
		switch {
		case op.Err == nil:
		case strings.HasPrefix(op.Err.Error(), "CROSSSLOT"):
			crossSlot++
		default:
			errs++
		}
	}
	if crossSlot > 0 {
		t.Logf("%s, %s: %d CROSSSLOT replies to cross-slot MGET/MSET left out", scenario, client, crossSlot)
	}
	lost := len(res.BadReplies) + len(res.CheckErrors)
	for _, l := range res.Losses {
		if excused == nil || !excused(l) {
			lost++
		}
	}
	r := row{scenario, client, errs, lost, event.P99, event.Max}
	rowsMu.Lock()
	defer rowsMu.Unlock()
	if rows[scenario] == nil {
		rows[scenario] = map[string]row{}
	}
	rows[scenario][client] = r
	p, okP := rows[scenario]["proxy"]
	c, okC := rows[scenario]["ClusterClient"]
	if !okP || !okC {
		return
	}
	for _, x := range []row{p, c} {
		t.Logf("TABLE | %s | %s | %d | %d | %v | %v |", x.scenario, x.client, x.errors, x.lost,
			x.p99.Round(100*time.Microsecond), x.max.Round(time.Millisecond))
	}
	if p.errors > c.errors || p.lost > c.lost {
		t.Errorf("%s: the proxy had %d errors and %d lost writes, ClusterClient %d and %d",
			scenario, p.errors, p.lost, c.errors, c.lost)
	}
}

// latencyWithin fails t if the requests that started during an event were slower than the bounds. The bounds
// are several times what a quiet run measures (the README's table), so that they hold on a loaded 2-core
// machine, and far below what a stalled connection or a missed redirect costs.
func latencyWithin(t *testing.T, event loadgen.Summary, p99, worst time.Duration) {
	t.Helper()
	if event.P99 > p99 || event.Max > worst {
		t.Errorf("during the event p99 %v, max %v; want at most %v and %v", event.P99, event.Max, p99, worst)
	}
}

// requireIntact fails t for every lost write, impossible reply and failed check read the load found. allowed,
// if not nil, excuses the losses the scenario's semantics allow (Redis's asynchronous replication loses writes
// acknowledged by a master just before it was killed); a failed read of the final check is never excused: it
// would hide a lost write.
func requireIntact(t *testing.T, res *loadgen.Result, allowed func(loadgen.Loss) bool) {
	t.Helper()
	var problems []string
	excused := 0
	for _, l := range res.Losses {
		if allowed != nil && allowed(l) {
			excused++
			continue
		}
		problems = append(problems, "lost write: "+l.String())
	}
	for _, b := range res.BadReplies {
		problems = append(problems, "bad reply: "+b)
	}
	for _, e := range res.CheckErrors {
		problems = append(problems, "check read failed: "+e)
	}
	if excused > 0 {
		t.Logf("%d losses the scenario allows", excused)
	}
	if len(problems) > 0 {
		t.Errorf("%d problems in the load's data; the first: %s", len(problems),
			strings.Join(problems[:min(len(problems), 10)], "\n"))
	}
}
