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

	LostWrites      int // acknowledged writes that did not read back (during the run or at the check)
	CounterMismatch int // counters whose value is outside [acked, acked+unknown]
	UnknownIncrs    int // INCRs that failed: their outcome is unknown
	CheckErrors     []string
}

// Run starts the workers and returns a stop function that ends them, checks the data and returns the result.
func Run(cfg Config) (stop func() *Result) {
	ctx, cancel := context.WithCancel(context.Background())
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, cfg: &cfg, c: cfg.NewClient(), rng: rand.New(rand.NewPCG(uint64(i), 7)),
			values: map[string]string{}}
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
		if cfg.StaleReads {
			time.Sleep(500 * time.Millisecond) // let the replicas catch up
			for _, w := range workers {
				w.lost = 0
			}
		}
		res := &Result{}
		for _, w := range workers {
			w.check(res)
			res.Ops = append(res.Ops, w.ops...)
			res.LostWrites += w.lost
			res.UnknownIncrs += w.unknownIncr
		}
		slices.SortFunc(res.Ops, func(a, b Op) int { return a.Start.Compare(b.Start) })
		return res
	}
}

type worker struct {
	id          int
	cfg         *Config
	c           redis.Cmdable
	rng         *rand.Rand
	seq         int
	values      map[string]string // last acknowledged value per key ("" = deleted); keys with an unknown write are absent
	unsure      map[string]bool   // keys whose last write failed: either value may be there
	acked       int               // acknowledged INCRs
	unknownIncr int
	lost        int
	checking    bool // in check: reads count even with StaleReads
	ops         []Op
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
}

func (w *worker) run(ctx context.Context) {
	if w.unsure == nil {
		w.unsure = map[string]bool{}
	}
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
			err := w.c.Set(opctx, k, val, 0).Err()
			w.record("SET", start, err, k)
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
			err := w.c.Incr(opctx, w.counter()).Err()
			w.record("INCR", start, err, w.counter())
			if err == nil {
				w.acked++
			} else {
				w.unknownIncr++
			}
		case p < 80:
			vals, err := w.c.MGet(opctx, k, k2).Result()
			w.record("MGET", start, err, k, k2)
			if err == nil && len(vals) == 2 {
				for i, kk := range []string{k, k2} {
					s, _ := vals[i].(string)
					w.read(kk, s)
				}
			}
		case p < 86:
			// Two keys of one slot (hash tag): during a migration this is the request Redis answers TRYAGAIN.
			a, b := w.tagged(k, "a"), w.tagged(k, "b")
			if w.rng.IntN(2) == 0 {
				err := w.c.MSet(opctx, a, val, b, val).Err()
				w.record("MSET", start, err, a, b)
				w.wrote(err, a, val)
				w.wrote(err, b, val)
			} else {
				vals, err := w.c.MGet(opctx, a, b).Result()
				w.record("MGET", start, err, a, b)
				if err == nil && len(vals) == 2 {
					for i, kk := range []string{a, b} {
						s, _ := vals[i].(string)
						w.read(kk, s)
					}
				}
			}
		case p < 92:
			v2 := val + "b"
			err := w.c.MSet(opctx, k, val, k2, v2).Err()
			w.record("MSET", start, err, k, k2)
			if k == k2 {
				w.wrote(err, k, v2)
			} else {
				w.wrote(err, k, val)
				w.wrote(err, k2, v2)
			}
		default:
			err := w.c.Del(opctx, k).Err()
			w.record("DEL", start, err, k)
			w.wrote(err, k, "")
		}
		cancel()
	}
}

func (w *worker) wrote(err error, k, v string) {
	if err != nil {
		w.unsure[k] = true
		delete(w.values, k)
		return
	}
	delete(w.unsure, k)
	w.values[k] = v
}

// read compares a value read with the last acknowledged write of the key.
func (w *worker) read(k, got string) {
	if w.unsure[k] || (w.cfg.StaleReads && !w.checking) {
		return
	}
	want, known := w.values[k]
	if !known {
		want = ""
	}
	if got != want {
		w.lost++
		w.values[k] = got // count each loss once
	}
}

// check reads every key and the counter back after the run.
func (w *worker) check(res *Result) {
	w.checking = true
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
	if n < w.acked || n > w.acked+w.unknownIncr {
		res.CounterMismatch++
		res.CheckErrors = append(res.CheckErrors,
			fmt.Sprintf("%s = %d, acknowledged INCRs %d, unknown %d", w.counter(), n, w.acked, w.unknownIncr))
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
