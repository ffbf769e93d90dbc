// Package loadgen drives a Redis endpoint with many concurrent clients doing SET, GET, INCR, MGET, MSET and
// DEL over a known key space, records every reply and its latency, and afterwards checks the data: every
// acknowledged write must read back, every counter must equal its acknowledged INCRs. The failover and
// resharding tests use it; bench/loadgen runs it by hand against any address.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config shapes a run.
type Config struct {
	Clients       int    // concurrent workers, each with its own keys
	KeysPerWorker int    // keys each worker writes and reads
	Prefix        string // key prefix, so runs do not collide
	// NewClient makes the client a worker uses. Plain clients get one connection each.
	NewClient func() redis.Cmdable
	// StaleReads: reads may be served by replicas, so a read during the run may lag the last write. Only the
	// check after the run (after replication caught up) counts lost writes.
	StaleReads bool
	// BeforeCheck, if set, runs after the workers stopped and before the data is read back: with StaleReads,
	// it waits until the replicas have caught up.
	BeforeCheck func()
}

// Op is one request's outcome.
type Op struct {
	Start   time.Time
	Latency time.Duration
	Kind    string    // SET, GET, INCR, MGET, MSET, DEL
	Keys    [2]string // the keys it touched (the second empty for one-key commands)
	Err     error     // nil, or the error the client saw
}

// Result is what a run saw and what the check found.
type Result struct {
	Ops []Op

	// Losses are acknowledged writes that did not read back (during the run or at the check) and counters
	// below their acknowledged INCRs. Redis's asynchronous replication can lose writes acknowledged by a master
	// just before it died; nothing else may.
	Losses []Loss
	// BadReplies are replies no Redis could have given this client: a write not answered OK, an MGET of the
	// wrong length, a DEL count other than 0 or 1, a counter above what was sent (an INCR that ran twice).
	BadReplies []string
	// CheckErrors are reads of the final check that failed: each hides whether a write was lost.
	CheckErrors []string

	LostWrites      int // acknowledged values that did not read back
	CounterMismatch int // counters found outside what the acknowledged and unknown INCRs allow
	UnknownIncrs    int // INCRs that failed: their outcome is unknown
}

// Loss is one acknowledged write that did not read back.
type Loss struct {
	Key     string
	Want    string    // the values it may have, quoted ("" = none); for a counter, the least value it may have
	Got     string    // what was found
	AckedAt time.Time // when its value was last known (zero: the key was never written)
	Seen    string    // the request that found it: GET, MGET, DEL, INCR, or check (the read-back after the run)
	SeenAt  time.Time // when that request started
}

func (l Loss) String() string {
	since := "never written"
	if !l.AckedAt.IsZero() {
		since = "value known since " + l.AckedAt.Format("15:04:05.000")
	}
	return fmt.Sprintf("%s: want %s, got %q (%s; found by %s at %s)", l.Key, l.Want, l.Got, since, l.Seen,
		l.SeenAt.Format("15:04:05.000"))
}

// Problems lists every loss, impossible reply and failed check read: what a test that allows none reports.
func (r *Result) Problems() []string {
	var out []string
	for _, l := range r.Losses {
		out = append(out, "lost write: "+l.String())
	}
	for _, b := range r.BadReplies {
		out = append(out, "bad reply: "+b)
	}
	for _, e := range r.CheckErrors {
		out = append(out, "check read failed: "+e)
	}
	return out
}

// Run starts the workers and returns a stop function that ends them, checks the data and returns the result.
func Run(cfg Config) (stop func() *Result) {
	ctx, cancel := context.WithCancel(context.Background())
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, cfg: &cfg, c: cfg.NewClient(), rng: rand.New(rand.NewPCG(uint64(i), 7)),
			may: map[string][]string{}, ackedAt: map[string]time.Time{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	return func() *Result {
		cancel()
		wg.Wait()
		if cfg.BeforeCheck != nil {
			cfg.BeforeCheck()
		}
		res := &Result{}
		for _, w := range workers {
			w.res = res
			w.check()
			res.Ops = append(res.Ops, w.ops...)
			res.UnknownIncrs += w.unknownIncr
		}
		slices.SortFunc(res.Ops, func(a, b Op) int { return a.Start.Compare(b.Start) })
		return res
	}
}

type worker struct {
	id  int
	cfg *Config
	c   redis.Cmdable
	rng *rand.Rand
	seq int
	// may holds the values each key may have ("" = none): the last acknowledged write's, and those of the
	// writes that failed since (their outcome is unknown). A key not in it was never written.
	may     map[string][]string
	ackedAt map[string]time.Time // when the key's value was last known: a write acknowledged, or a read that settled it
	// The request being checked, named in the losses it finds.
	curKind  string
	curStart time.Time
	// The counter is in [lo, hi]: lo counts the INCRs known to have run, hi adds those whose outcome is unknown.
	lo, hi      int
	incrAckedAt time.Time
	unknownIncr int
	checking    bool // in check: reads count even with StaleReads
	ops         []Op
	lost        []Loss
	bad         []string
	res         *Result // set for the check; the run keeps its findings in lost and bad
}

func (w *worker) key(i int) string {
	return fmt.Sprintf("%s:w%d:k%d", w.cfg.Prefix, w.id, i)
}

// tagged is a key in the same slot as every other tagged key of k.
func (w *worker) tagged(k, suffix string) string { return "{" + k + "}" + suffix }

func (w *worker) counter() string { return fmt.Sprintf("%s:w%d:n", w.cfg.Prefix, w.id) }

func (w *worker) record(kind string, start time.Time, err error, keys ...string) {
	op := Op{Start: start, Latency: time.Since(start), Kind: kind, Err: err}
	copy(op.Keys[:], keys)
	w.ops = append(w.ops, op)
	w.curKind, w.curStart = kind, start
}

func (w *worker) loss(k, want, got string, ackedAt time.Time) {
	w.lost = append(w.lost, Loss{Key: k, Want: want, Got: got, AckedAt: ackedAt, Seen: w.curKind, SeenAt: w.curStart})
}

// possible is what k may hold.
func (w *worker) possible(k string) []string {
	if v, ok := w.may[k]; ok {
		return v
	}
	return []string{""}
}

func quoteAll(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, " or ")
}

func (w *worker) badReply(format string, args ...any) {
	w.bad = append(w.bad, fmt.Sprintf(format, args...))
}

func (w *worker) run(ctx context.Context) {
	n := w.cfg.KeysPerWorker
	for ctx.Err() == nil {
		w.seq++
		val := strconv.Itoa(w.seq)
		k := w.key(w.rng.IntN(n))
		k2 := w.key(w.rng.IntN(n))
		start := time.Now()
		opctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		switch p := w.rng.IntN(100); {
		case p < 25:
			ok, err := w.c.Set(opctx, k, val, 0).Result()
			w.record("SET", start, err, k)
			w.wroteOK("SET "+k, ok, err)
			w.wrote(err, k, val)
		case p < 55:
			got, err := w.c.Get(opctx, k).Result()
			if errors.Is(err, redis.Nil) {
				got, err = "", nil
			}
			w.record("GET", start, err, k)
			if err == nil {
				w.read(k, got)
			}
		case p < 70:
			got, err := w.c.Incr(opctx, w.counter()).Result()
			w.record("INCR", start, err, w.counter())
			w.incremented(int(got), err)
		case p < 80:
			vals, err := w.c.MGet(opctx, k, k2).Result()
			w.record("MGET", start, err, k, k2)
			w.mgot(err, vals, k, k2)
		case p < 86:
			// Two keys of one slot (hash tag): during a migration this is the request Redis answers TRYAGAIN.
			a, b := w.tagged(k, "a"), w.tagged(k, "b")
			if w.rng.IntN(2) == 0 {
				ok, err := w.c.MSet(opctx, a, val, b, val).Result()
				w.record("MSET", start, err, a, b)
				w.wroteOK("MSET "+a+" "+b, ok, err)
				w.wrote(err, a, val)
				w.wrote(err, b, val)
			} else {
				vals, err := w.c.MGet(opctx, a, b).Result()
				w.record("MGET", start, err, a, b)
				w.mgot(err, vals, a, b)
			}
		case p < 92:
			v2 := val + "b"
			ok, err := w.c.MSet(opctx, k, val, k2, v2).Result()
			w.record("MSET", start, err, k, k2)
			w.wroteOK("MSET "+k+" "+k2, ok, err)
			if k == k2 {
				w.wrote(err, k, v2)
			} else {
				w.wrote(err, k, val)
				w.wrote(err, k2, v2)
			}
		default:
			n, err := w.c.Del(opctx, k).Result()
			w.record("DEL", start, err, k)
			if err == nil {
				w.deleted(k, n)
			}
			w.wrote(err, k, "")
		}
		cancel()
	}
}

func (w *worker) wroteOK(what, reply string, err error) {
	if err == nil && reply != "OK" {
		w.badReply("%s answered %q, not OK", what, reply)
	}
}

func (w *worker) wrote(err error, k, v string) {
	if err != nil {
		if p := w.possible(k); !slices.Contains(p, v) {
			w.may[k] = append(slices.Clip(p), v)
		}
		return
	}
	w.may[k] = []string{v}
	w.ackedAt[k] = time.Now()
}

// deleted checks a DEL's count against what the key may hold: 1 if it had a value, 0 if not.
func (w *worker) deleted(k string, n int64) {
	if n != 0 && n != 1 {
		w.badReply("DEL %s answered %d", k, n)
		return
	}
	p := w.possible(k)
	if slices.ContainsFunc(p, func(v string) bool { return (v != "") == (n == 1) }) {
		return
	}
	got := ""
	if n == 1 {
		got = "(a value)"
	}
	w.loss(k, quoteAll(p), got, w.ackedAt[k])
}

// incremented checks an INCR's reply: only this worker increments its counter, so the reply is one more
// than the value before, which the INCRs known and unknown bound.
func (w *worker) incremented(got int, err error) {
	if err != nil {
		w.unknownIncr++
		w.hi++
		return
	}
	switch {
	case got < w.lo+1:
		w.loss(w.counter(), strconv.Itoa(w.lo+1), strconv.Itoa(got), w.incrAckedAt)
	case got > w.hi+1:
		w.badReply("INCR %s answered %d, at most %d INCRs were sent: one ran twice", w.counter(), got, w.hi+1)
	}
	w.lo, w.hi = got, got
	w.incrAckedAt = time.Now()
}

// mgot checks an MGET's reply: one value or nil per key, each compared with the last write.
func (w *worker) mgot(err error, vals []any, keys ...string) {
	if err != nil {
		return
	}
	if len(vals) != len(keys) {
		w.badReply("MGET %v answered %d values", keys, len(vals))
		return
	}
	for i, k := range keys {
		switch v := vals[i].(type) {
		case string:
			w.read(k, v)
		case nil:
			w.read(k, "")
		default:
			w.badReply("MGET %v answered %T %v for %s", keys, v, v, k)
		}
	}
}

// read compares a value read with what the key may hold; a read of one of several possible values settles it.
func (w *worker) read(k, got string) {
	if w.cfg.StaleReads && !w.checking {
		return
	}
	p := w.possible(k)
	if !slices.Contains(p, got) {
		w.loss(k, quoteAll(p), got, w.ackedAt[k])
	} else if len(p) == 1 {
		return
	}
	w.may[k] = []string{got} // settled; a loss counts once
	w.ackedAt[k] = time.Now()
}

// check reads every key and the counter back after the run and adds the worker's findings to res.
func (w *worker) check() {
	res := w.res
	defer func() {
		for _, l := range w.lost {
			if l.Key == w.counter() {
				res.CounterMismatch++
			} else {
				res.LostWrites++
			}
		}
		res.Losses = append(res.Losses, w.lost...)
		res.BadReplies = append(res.BadReplies, w.bad...)
	}()
	w.checking = true
	w.curKind, w.curStart = "check", time.Now()
	ctx := context.Background()
	var keys []string
	for i := 0; i < w.cfg.KeysPerWorker; i++ {
		keys = append(keys, w.key(i), w.tagged(w.key(i), "a"), w.tagged(w.key(i), "b"))
	}
	for _, k := range keys {
		got, err := w.c.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			got, err = "", nil
		}
		if err != nil {
			res.CheckErrors = append(res.CheckErrors, fmt.Sprintf("GET %s: %v", k, err))
			continue
		}
		w.read(k, got)
	}
	n, err := w.c.Get(ctx, w.counter()).Int()
	if errors.Is(err, redis.Nil) {
		n, err = 0, nil
	}
	if err != nil {
		res.CheckErrors = append(res.CheckErrors, fmt.Sprintf("GET %s: %v", w.counter(), err))
		return
	}
	switch {
	case n < w.lo:
		w.loss(w.counter(), strconv.Itoa(w.lo), strconv.Itoa(n), w.incrAckedAt)
	case n > w.hi:
		res.CounterMismatch++
		w.badReply("%s = %d, but only %d INCRs were sent (%d of them unknown): one ran twice", w.counter(), n,
			w.hi, w.hi-w.lo)
	}
}

// Summary is the outcome of the ops that started in [from, to).
type Summary struct {
	Ops, Errors   int
	ErrorsByKind  map[string]int
	ErrorSamples  []string
	P50, P99, Max time.Duration
}

// Window summarises the ops that started in [from, to); zero times mean unbounded.
func (r *Result) Window(from, to time.Time) Summary {
	return r.Filter(from, to, nil)
}

// Filter is Window for the ops that keep also accepts (nil: all).
func (r *Result) Filter(from, to time.Time, keep func(Op) bool) Summary {
	s := Summary{ErrorsByKind: map[string]int{}}
	var lat []time.Duration
	for _, op := range r.Ops {
		if (!from.IsZero() && op.Start.Before(from)) || (!to.IsZero() && !op.Start.Before(to)) {
			continue
		}
		if keep != nil && !keep(op) {
			continue
		}
		s.Ops++
		lat = append(lat, op.Latency)
		if op.Err != nil {
			s.Errors++
			s.ErrorsByKind[op.Kind]++
			if len(s.ErrorSamples) < 5 {
				s.ErrorSamples = append(s.ErrorSamples, op.Kind+": "+op.Err.Error())
			}
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = lat[len(lat)/2]
		s.P99 = lat[len(lat)*99/100]
		s.Max = lat[len(lat)-1]
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("ops %d, errors %d %v, p50 %v, p99 %v, max %v %q", s.Ops, s.Errors, s.ErrorsByKind,
		s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Max.Round(time.Microsecond), s.ErrorSamples)
}
