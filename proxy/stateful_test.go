package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
)

// The stateful workload: what runs on leased connections, through the proxy, while the cluster changes.
//   - 20 consumers, one per queue, BLMOVE from their queue to a processing list of their own and then LREM the
//     element from it (the reliable-queue pattern); 4 producers LPUSH unique elements over the 20 queues.
//   - 20 clients run WATCH / GET / MULTI / INCR / EXEC optimistic loops on 4 shared counters.
//
// Every element whose LPUSH was acknowledged must be delivered exactly once; a counter must equal the EXECs
// acknowledged on it.

const (
	statefulQueues   = 20
	statefulWatchers = 20
	statefulCounters = 4
)

type statefulResult struct {
	pub pubsubResult

	pushed      map[string]time.Time // acknowledged LPUSH: element -> when
	unsure      map[string]bool      // LPUSH that failed: the element may or may not be in its queue
	delivered   map[string]int       // element -> times a consumer got it
	deliveredAt map[string]time.Time // the first delivery
	stranded    []string             // left in a processing list (moved, reply lost)
	popErrors   []string             // errors consumers saw, with when
	pushErrors  []string
	execs       map[string]int // counter -> acknowledged EXECs
	execUnsure  map[string]int // counter -> EXECs that failed with an error (may or may not have run)
	counters    map[string]int // counter -> final value
	execErrors  []string
	conflicts   int64 // EXECs that answered a null array (watch touched), retried
}

type statefulLoad struct {
	addr   string
	queues []string // hash tags
	ctrs   []string // counter keys
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    statefulResult
	start  time.Time
}

// startStateful runs the workload on queues with the given hash tags (spread them over the shards that
// change) through addr until the returned stop.
func startStateful(t *testing.T, addr string, tags []string) func() *statefulResult {
	t.Helper()
	if len(tags) != statefulQueues {
		t.Fatalf("%d tags, want %d", len(tags), statefulQueues)
	}
	w := &statefulLoad{addr: addr, queues: tags, start: time.Now()}
	w.res = statefulResult{pushed: map[string]time.Time{}, unsure: map[string]bool{}, delivered: map[string]int{},
		deliveredAt: map[string]time.Time{}, execs: map[string]int{}, execUnsure: map[string]int{},
		counters: map[string]int{}}
	for i := range statefulCounters {
		w.ctrs = append(w.ctrs, tags[i*5]+"ctr")
	}
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	for i, tag := range tags {
		if err := c.Del(ctx, tag+"q", fmt.Sprintf("%sproc:%d", tag, i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range w.ctrs {
		c.Del(ctx, k)
	}
	var producers sync.WaitGroup
	for p := range 4 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			w.produce(p)
		}()
	}
	consumersDone := make(chan struct{})
	var consumers sync.WaitGroup
	for i := range statefulQueues {
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			w.consume(i, consumersDone)
		}()
	}
	stopPubSub := startPubSub(t, addr, []string{tags[1] + "news", tags[11] + "news", tags[16] + "news"},
		[]string{tags[2] + "sch", tags[12] + "sch", tags[17] + "sch"})
	var watchers sync.WaitGroup
	for i := range statefulWatchers {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			w.watchLoop(i)
		}()
	}
	return func() *statefulResult {
		w.stop.Store(true)
		w.res.pub = stopPubSub()
		producers.Wait()
		watchers.Wait()
		close(consumersDone) // consumers now stop at their first empty wait
		consumers.Wait()
		c := newClient(addr)
		defer c.Close()
		for i, tag := range tags {
			left, err := c.LRange(ctx, fmt.Sprintf("%sproc:%d", tag, i), 0, -1).Result()
			if err != nil {
				t.Errorf("reading processing list %d: %v", i, err)
			}
			w.res.stranded = append(w.res.stranded, left...)
			if n, err := c.LLen(ctx, tag+"q").Result(); err != nil || n != 0 {
				t.Errorf("queue %d: %d elements left, %v", i, n, err)
			}
		}
		for _, k := range w.ctrs {
			n, err := c.Get(ctx, k).Int()
			if err != nil && err != redis.Nil {
				t.Errorf("reading counter %s: %v", k, err)
			}
			w.res.counters[k] = n
		}
		return &w.res
	}
}

func (w *statefulLoad) since() string { return time.Since(w.start).Round(time.Millisecond).String() }

func (w *statefulLoad) produce(p int) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: w.addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer c.Close()
	for seq := 0; !w.stop.Load(); seq++ {
		q := (p + seq) % statefulQueues
		elem := fmt.Sprintf("p%d:%d", p, seq)
		err := c.LPush(ctx, w.queues[q]+"q", elem).Err()
		w.mu.Lock()
		if err != nil {
			w.res.unsure[elem] = true
			w.res.pushErrors = append(w.res.pushErrors, w.since()+" "+err.Error())
		} else {
			w.res.pushed[elem] = time.Now()
		}
		w.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *statefulLoad) consume(i int, done <-chan struct{}) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: w.addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer c.Close()
	src, proc := w.queues[i]+"q", fmt.Sprintf("%sproc:%d", w.queues[i], i)
	for {
		v, err := c.BLMove(ctx, src, proc, "RIGHT", "LEFT", time.Second).Result()
		switch {
		case err == redis.Nil:
			select {
			case <-done:
				return
			default:
				continue
			}
		case err != nil:
			w.mu.Lock()
			w.res.popErrors = append(w.res.popErrors, w.since()+" "+err.Error())
			w.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.res.delivered[v]++
		if _, ok := w.res.deliveredAt[v]; !ok {
			w.res.deliveredAt[v] = time.Now()
		}
		w.mu.Unlock()
		for c.LRem(ctx, proc, 1, v).Err() != nil && !w.stop.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (w *statefulLoad) watchLoop(i int) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: w.addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer c.Close()
	for n := 0; !w.stop.Load(); n++ {
		key := w.ctrs[(i+n)%len(w.ctrs)]
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			v, err := tx.Get(ctx, key).Int()
			if err != nil && err != redis.Nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, v+1, 0)
				return nil
			})
			return err
		}, key)
		w.mu.Lock()
		switch {
		case err == nil:
			w.res.execs[key]++
		case errors.Is(err, redis.TxFailedErr):
			w.res.conflicts++
		default:
			w.res.execUnsure[key]++
			w.res.execErrors = append(w.res.execErrors, w.since()+" "+err.Error())
		}
		w.mu.Unlock()
		if err != nil && !errors.Is(err, redis.TxFailedErr) {
			time.Sleep(10 * time.Millisecond) // as an application backs off after an error
		}
	}
}

// check reports the run and fails the test for what falls outside what the scenario allows: inWindow says
// whether something acknowledged at a time may have been undone by asynchronous replication through a master
// kill (an element pushed then may be lost; one delivered then may be delivered again); nil: nothing may.
func (r *statefulResult) check(t *testing.T, scenario string, errorsOK bool, inWindow func(time.Time) bool) {
	t.Helper()
	var lost, dup, bogus []string
	for e := range r.pushed {
		switch n := r.delivered[e]; {
		case n == 0 && !contains(r.stranded, e):
			lost = append(lost, e)
		case n > 1:
			dup = append(dup, e)
		}
	}
	for e, n := range r.delivered {
		if _, ok := r.pushed[e]; !ok && !r.unsure[e] {
			bogus = append(bogus, e)
		}
		if n > 1 && r.unsure[e] {
			dup = append(dup, e)
		}
	}
	sort.Strings(lost)
	sort.Strings(dup)
	execs, unsure := 0, 0
	for _, n := range r.execs {
		execs += n
	}
	for _, n := range r.execUnsure {
		unsure += n
	}
	t.Logf("%s: %d elements pushed (%d unsure), %d delivered, %d stranded in processing lists, %d lost, "+
		"%d duplicated; consumer errors %d %v; producer errors %d %v; %d EXECs acknowledged, %d watch conflicts "+
		"retried, %d EXEC errors %v; counters %v", scenario, len(r.pushed), len(r.unsure), len(r.delivered),
		len(r.stranded), len(lost), len(dup), len(r.popErrors), head(r.popErrors, 3), len(r.pushErrors),
		head(r.pushErrors, 3), execs, r.conflicts, unsure, head(r.execErrors, 3), r.counters)
	if len(r.pushed) < 1000 || execs < 500 {
		t.Errorf("%s: only %d elements pushed and %d EXECs: the run proves little", scenario, len(r.pushed), execs)
	}
	if !errorsOK && len(r.popErrors)+len(r.pushErrors)+len(r.execErrors) > 0 {
		t.Errorf("%s: errors: consumers %v, producers %v, EXEC %v", scenario, head(r.popErrors, 5),
			head(r.pushErrors, 5), head(r.execErrors, 5))
	}
	ok := func(at time.Time) bool { return inWindow != nil && inWindow(at) }
	for _, e := range lost {
		if !ok(r.pushed[e]) {
			t.Errorf("%s: %d acknowledged elements never delivered, e.g. %s pushed at %v", scenario, len(lost), e,
				r.pushed[e].Format("15:04:05.000"))
			break
		}
	}
	for _, e := range dup {
		if !ok(r.deliveredAt[e]) {
			t.Errorf("%s: %d elements delivered more than once, e.g. %s first at %v", scenario, len(dup), e,
				r.deliveredAt[e].Format("15:04:05.000"))
			break
		}
	}
	if len(bogus) > 0 {
		t.Errorf("%s: %d elements delivered that nobody pushed: %v", scenario, len(bogus), head(bogus, 5))
	}
	if len(r.stranded) > 0 && !errorsOK {
		t.Errorf("%s: elements left in processing lists: %v", scenario, head(r.stranded, 5))
	}
	for k, n := range r.counters {
		if n < r.execs[k] || n > r.execs[k]+r.execUnsure[k] {
			if inWindow == nil || n > r.execs[k]+r.execUnsure[k] { // EXECs are not timed: any loss is excused
				t.Errorf("%s: counter %s is %d after %d acknowledged EXECs and %d unsure", scenario, k, n,
					r.execs[k], r.execUnsure[k])
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }

// TestStatefulManualFailover: CLUSTER FAILOVER of every shard in turn under the stateful workload. Blocked
// consumers are answered UNBLOCKED by the demoted master and waited again on the new one; a WATCH left on
// the old master makes its EXEC answer a touched watch and the loop retries. Exactly once, no error.
func TestStatefulManualFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	snap := snapshotOf(srv)
	stop := startStateful(t, addr, tagsInSlots(0, 16384, statefulQueues))
	time.Sleep(time.Second)
	for shard := range snap.Shards {
		replica := nodeByAddr(cl, snap.Nodes[snap.Shards[shard].Replicas[0]].Addr)
		if err := replica.Client(t).ClusterFailover(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "replica promoted", func() bool { return isMaster(replica) })
		time.Sleep(time.Second)
	}
	res := stop()
	res.check(t, "manual failover of each shard", false, nil)
	res.pub.check(t, "manual failover of each shard", false, nil)
}

// TestStatefulReshard: the slots of half the queues move to another master (redis-cli --cluster reshard)
// under the stateful workload: blocked consumers follow MOVED and ASK to the new owner. Exactly once, no
// error.
func TestStatefulReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	snap := snapshotOf(srv)
	src := cl.Node(snap.Nodes[snap.Shards[0].Master].Addr)
	dst := cl.Node(snap.Nodes[snap.Shards[1].Master].Addr)
	lo := firstSlot(snap, 0)
	tags := append(tagsInSlots(lo, lo+1000, statefulQueues/2), tagsInSlots(lo+1000, 16384, statefulQueues/2)...)
	stop := startStateful(t, addr, tags)
	time.Sleep(time.Second)
	ctx := context.Background()
	srcID, _ := src.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ := dst.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	reshardStart := time.Now()
	out, err := exec.Command("redis-cli", "--cluster", "reshard", src.Addr, "--cluster-from", srcID,
		"--cluster-to", dstID, "--cluster-slots", "1000", "--cluster-yes").CombinedOutput()
	reshardEnd := time.Now().Add(time.Second) // the old shard's replica learns of the move a little later
	if err != nil {
		stop()
		t.Fatalf("reshard: %v\n%s", err, tail(string(out), 20))
	}
	time.Sleep(time.Second)
	res := stop()
	st := srv.BackendStats()
	t.Logf("absorbed: MOVED %d, ASK %d, TRYAGAIN %d", st.Moved, st.Ask, st.TryAgain)
	res.check(t, "live reshard of 1,000 slots", false, nil)
	// A shard channel whose slot moves loses (and may reorder, at the switch) what the old shard took after the
	// proxy followed the slot: Redis Cluster's sharded Pub/Sub does not carry subscriptions over.
	res.pub.check(t, "live reshard of 1,000 slots", false, func(ch string, at time.Time) bool {
		return ch == tags[2]+"sch" && at.After(reshardStart) && at.Before(reshardEnd)
	})
}

// TestStatefulMasterKilled: SIGKILL of a master under the stateful workload. Redis replicates asynchronously:
// what the dead master acknowledged in its last moments may be lost, and a pop it made may be undone; each
// such case must fall in the failover window.
func TestStatefulMasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) { c.Timeout = proxy.Duration(10 * time.Second) })
	snap := snapshotOf(srv)
	master := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Master].Addr)
	replica := nodeByAddr(cl, snap.Nodes[snap.Shards[0].Replicas[0]].Addr)
	stop := startStateful(t, addr, tagsInSlots(0, 16384, statefulQueues))
	time.Sleep(time.Second)
	killed := time.Now()
	master.Kill()
	promoted := eventually(t, 20*time.Second, "replica promoted", func() bool { return isMaster(replica) })
	time.Sleep(2 * time.Second)
	res := stop()
	t.Logf("master killed; replica promoted %v later", promoted.Sub(killed).Round(time.Millisecond))
	res.check(t, "master SIGKILL", true, func(at time.Time) bool {
		return at.After(killed.Add(-250*time.Millisecond)) && at.Before(killed)
	})
	// A subscriber whose node died is subscribed again elsewhere at once: what was published meanwhile is lost,
	// and what the new node gets late over the cluster bus comes twice; what the dead master took shortly before
	// the kill never left it.
	res.pub.check(t, "master SIGKILL", true, func(_ string, at time.Time) bool {
		return at.After(killed.Add(-250*time.Millisecond)) && at.Before(killed.Add(time.Second))
	})
	for _, lines := range [][]string{res.popErrors, res.pushErrors, res.execErrors} {
		for _, l := range lines {
			// Requests for the dead master's slots wait for the promotion (the 10 s timeout is longer):
			// only what was in flight on it at the kill may fail.
			if !strings.Contains(l, "may or may not") {
				t.Errorf("an error other than a write in flight at the kill: %s", l)
			}
		}
	}
}

// The Pub/Sub part of the stateful workload: 20 subscribers, each to 3 channels and 3 shard channels over the
// three shards; one publisher sends a numbered message to each in turn, through the proxy.

const statefulSubscribers = 20

type pubsubResult struct {
	published map[string]int // channel -> messages acknowledged (numbered 0..n-1)
	at        map[string][]time.Time
	unsure    map[string]map[int]bool // channel -> numbers whose PUBLISH failed
	lostAt    map[string][]time.Time  // when the missing ones were published
	dupAt     map[string][]time.Time  // when the duplicated ones were
	reorderAt map[string][]time.Time  // when the ones that came out of order were
	pubErrors []string
	// per subscriber and channel
	missing, dup, reordered map[string]int // channel -> count over all subscribers
	subErrors               []string
	dupSample               string
}

func startPubSub(t *testing.T, addr string, chans, shardChans []string) func() pubsubResult {
	t.Helper()
	ctx := context.Background()
	type subscriber struct {
		ps  *redis.PubSub
		mu  sync.Mutex
		got map[string][]int
	}
	var subs []*subscriber
	for range statefulSubscribers {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		ps := c.Subscribe(ctx, chans...)
		for _, ch := range shardChans {
			if err := ps.SSubscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		for range len(chans) + len(shardChans) {
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sub := &subscriber{ps: ps, got: map[string][]int{}}
		subs = append(subs, sub)
		t.Cleanup(func() { ps.Close(); c.Close() })
	}
	res := pubsubResult{published: map[string]int{}, missing: map[string]int{}, dup: map[string]int{},
		reordered: map[string]int{}, at: map[string][]time.Time{}, lostAt: map[string][]time.Time{},
		dupAt: map[string][]time.Time{}, reorderAt: map[string][]time.Time{},
		unsure: map[string]map[int]bool{}}
	var subErrMu sync.Mutex
	for _, sub := range subs {
		go func() {
			for {
				m, err := sub.ps.ReceiveMessage(ctx)
				if err != nil {
					subErrMu.Lock()
					res.subErrors = append(res.subErrors, err.Error())
					subErrMu.Unlock()
					return
				}
				var n int
				fmt.Sscan(m.Payload, &n)
				sub.mu.Lock()
				sub.got[m.Channel] = append(sub.got[m.Channel], n)
				sub.mu.Unlock()
			}
		}()
	}
	var stop atomic.Bool
	var publishers sync.WaitGroup
	var pubMu sync.Mutex
	start := time.Now()
	for i, ch := range append(append([]string(nil), chans...), shardChans...) {
		publishers.Add(1)
		go func() { // one publisher per channel: its messages are numbered in order
			defer publishers.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 30 * time.Second})
			defer c.Close()
			for n := 0; !stop.Load(); {
				var err error
				if i < len(chans) {
					err = c.Publish(ctx, ch, n).Err()
				} else {
					err = c.SPublish(ctx, ch, n).Err()
				}
				pubMu.Lock()
				if err != nil { // it may or may not have been published: its number is not used again
					res.pubErrors = append(res.pubErrors, time.Since(start).Round(time.Millisecond).String()+" "+err.Error())
					if res.unsure[ch] == nil {
						res.unsure[ch] = map[int]bool{}
					}
					res.unsure[ch][n] = true
				}
				n++
				res.published[ch] = n
				res.at[ch] = append(res.at[ch], time.Now())
				pubMu.Unlock()
			}
		}()
	}
	return func() pubsubResult {
		// Enough messages for check to mean something, however slow the machine: publishing goes on after the
		// scenario's events until there are (up to 30 s more).
		for enough := time.Now().Add(30 * time.Second); time.Now().Before(enough); time.Sleep(20 * time.Millisecond) {
			pubMu.Lock()
			total := res.total()
			pubMu.Unlock()
			if total >= pubSubEnough {
				break
			}
		}
		stop.Store(true)
		publishers.Wait()
		// The last messages on their way.
		deadline := time.Now().Add(5 * time.Second)
		for _, sub := range subs {
			for time.Now().Before(deadline) {
				sub.mu.Lock()
				complete := true
				for ch, n := range res.published {
					got := sub.got[ch]
					complete = complete && len(got) > 0 && got[len(got)-1] == n-1
				}
				sub.mu.Unlock()
				if complete {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		time.Sleep(100 * time.Millisecond)
		for _, sub := range subs {
			sub.mu.Lock()
			for ch, n := range res.published {
				seen := make([]int, n)
				last := -1
				for _, m := range sub.got[ch] {
					if m < 0 || m >= n {
						continue
					}
					if seen[m]++; seen[m] > 1 {
						res.dup[ch]++
						res.dupAt[ch] = append(res.dupAt[ch], res.at[ch][m])
						if res.dupSample == "" {
							got := sub.got[ch]
							for j := range got {
								if got[j] == m {
									res.dupSample = fmt.Sprintf("%s: %v", ch, got[max(0, j-5):min(len(got), j+40)])
									break
								}
							}
						}
					}
					if m < last {
						res.reordered[ch]++
						res.reorderAt[ch] = append(res.reorderAt[ch], res.at[ch][m])
					}
					last = max(last, m)
				}
				for i, k := range seen {
					if k == 0 && !res.unsure[ch][i] {
						res.missing[ch]++
						res.lostAt[ch] = append(res.lostAt[ch], res.at[ch][i])
					}
				}
			}
			sub.mu.Unlock()
		}
		return res
	}
}

// pubSubEnough is the fewest messages a scenario's publishers send.
const pubSubEnough = 10000

// total is the messages published on every channel.
func (p *pubsubResult) total() int {
	n := 0
	for _, c := range p.published {
		n += c
	}
	return n
}

// check fails the test for a message missing, duplicated or out of order, except those lossy allows (by
// channel and when the message was published).
func (p *pubsubResult) check(t *testing.T, scenario string, errorsOK bool, lossy func(ch string, at time.Time) bool) {
	t.Helper()
	total := p.total()
	t.Logf("%s: pub/sub: %d messages published to %d subscribers (%v); missing %v, duplicated %v, out of order "+
		"%v; publisher errors %d %v; subscriber errors %v", scenario, total, statefulSubscribers, p.published,
		p.missing, p.dup, p.reordered, len(p.pubErrors), head(p.pubErrors, 3), head(p.subErrors, 3))
	if total < pubSubEnough {
		t.Errorf("%s: only %d messages published: the run proves little", scenario, total)
	}
	for _, c := range []struct {
		what string
		at   map[string][]time.Time
	}{{"missing", p.lostAt}, {"duplicated", p.dupAt}, {"out of order", p.reorderAt}} {
		for ch, ats := range c.at {
			var first, last time.Time
			for _, at := range ats {
				if lossy == nil || !lossy(ch, at) {
					t.Errorf("%s: %d deliveries of %s %s, one published at %s", scenario, len(ats), ch, c.what,
						at.Format("15:04:05.000"))
					break
				}
				if first.IsZero() || at.Before(first) {
					first = at
				}
				if at.After(last) {
					last = at
				}
			}
			t.Logf("%s: %s: %d deliveries %s, published from %s to %s", scenario, ch, len(ats), c.what,
				first.Format("15:04:05.000"), last.Format("15:04:05.000"))
		}
	}
	if p.dupSample != "" {
		t.Logf("%s: first duplicate and around: %s", scenario, p.dupSample)
	}
	if len(p.subErrors) > 0 {
		t.Errorf("%s: subscriber errors: %v", scenario, head(p.subErrors, 3))
	}
	if !errorsOK && len(p.pubErrors) > 0 {
		t.Errorf("%s: publisher errors: %v", scenario, head(p.pubErrors, 3))
	}
}
