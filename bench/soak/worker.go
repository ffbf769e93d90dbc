package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/topology"
)

// The commands of the mix, in report order.
const (
	cmdSET = iota
	cmdGET
	cmdINCR
	cmdMGET
	cmdMSET
	cmdDEL
	nCmds
)

var cmdNames = [nCmds]string{"SET", "GET", "INCR", "MGET", "MSET", "DEL"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// version identifies one value of a key: its length and CRC-32C, or the key's absence.
type version struct {
	present bool
	size    int32
	crc     uint32
}

func (v version) String() string {
	if !v.present {
		return "absent"
	}
	return fmt.Sprintf("%d B crc %08x", v.size, v.crc)
}

func versionOf(s string) version {
	return version{present: true, size: int32(len(s)), crc: crc32.Checksum(unsafe.Slice(unsafe.StringData(s), len(s)), castagnoli)}
}

// values hands out values without copying: each is a slice at a random offset of one random buffer, so two
// writes of one size almost never carry the same bytes, and a stale value is told from the current one.
type values struct {
	buf      []byte // random, read-only once built
	max      int    // largest value
	small    int    // largest "small" value
	largePct int    // percent of values with a size uniform in 0..max (the rest: 0..small)
}

func newValues(maxValue, small, largePct int) *values {
	v := &values{buf: make([]byte, 2*maxValue+4096), max: maxValue, small: min(small, maxValue), largePct: largePct}
	rng := rand.NewChaCha8([32]byte{'s', 'o', 'a', 'k'})
	_, _ = rng.Read(v.buf)
	return v
}

func (v *values) pick(rng *rand.Rand) ([]byte, version) {
	size := rng.IntN(v.small + 1)
	if rng.IntN(100) < v.largePct {
		size = rng.IntN(v.max + 1)
	}
	off := rng.IntN(len(v.buf) - size + 1)
	b := v.buf[off : off+size]
	return b, version{present: true, size: int32(size), crc: crc32.Checksum(b, castagnoli)}
}

// keyState is what a client knows about one of its keys. Only that client writes the key, over one
// connection, so the last acknowledged write is what every later read must return.
type keyState struct {
	cur     version   // last acknowledged write, or the value last read
	unknown []version // writes since cur whose outcome is unknown (they failed): any of them may be there
	prev    []version // older values (last few), to tell a stale read from a wrong one
}

func (s *keyState) push(v version) {
	if len(s.prev) == 4 {
		copy(s.prev, s.prev[1:])
		s.prev = s.prev[:3]
	}
	s.prev = append(s.prev, v)
}

// lostWrite is an acknowledged write that a read did not return.
type lostWrite struct {
	key      string
	slot     uint16
	class    string // "missing", "stale", "wrong value", "counter behind"
	want     string
	got      string
	at       time.Duration // since the load started
	readback bool          // found by the read-back after the run (else by a read during the run)
}

// Phases of the run, for requests counted by when they started.
const (
	phaseBefore   = iota // before the failover
	phaseFailover        // from the kill (or CLUSTER FAILOVER) to one second after the promotion
	phaseBetween         // until the old master is restarted
	phaseRejoin          // from the restart to one second after it is a replica again
	phaseAfter
	nPhases
)

var phaseNames = [nPhases]string{"before the failover", "failover (start to promoted+1s)", "promoted, old master not back yet",
	"old master restarting and resyncing", "after the rejoin"}

// phase is the current phase; the failover goroutine moves it on.
var phase atomic.Int32

// live counters for the periodic samples, all workers together.
var liveOps, liveErrs atomic.Int64

type phaseStats struct {
	ops, errs int64
	max       time.Duration
}

type cmdStats struct {
	ops, errs int64
	bytes     int64 // payload: values written, values read
	lat       hist
	max       time.Duration
	maxSize   int // payload of the slowest request
}

type errKind struct {
	n       int64
	samples []string // the first few, in full, with time, size and latency
}

type slowOp struct {
	cmd  string
	size int
	lat  time.Duration
	at   time.Duration
	err  string
}

// stats belong to one worker until the run ends, then they are merged.
type stats struct {
	cmd   [nCmds]cmdStats
	phase [nPhases]phaseStats
	errs  map[string]*errKind
	slow  []slowOp // requests slower than slowOp, the slowest 20
}

const slowThreshold = time.Second

func (s *stats) add(cmd int, ph int32, start time.Time, lat time.Duration, size int, err error, t0 time.Time) {
	c := &s.cmd[cmd]
	c.ops++
	c.bytes += int64(size)
	c.lat.add(lat)
	if lat > c.max {
		c.max, c.maxSize = lat, size
	}
	p := &s.phase[ph]
	p.ops++
	p.max = max(p.max, lat)
	liveOps.Add(1)
	at := start.Sub(t0)
	if err != nil {
		c.errs++
		p.errs++
		liveErrs.Add(1)
		kind := cmdNames[cmd] + " " + errKindOf(err)
		k := s.errs[kind]
		if k == nil {
			k = &errKind{}
			s.errs[kind] = k
		}
		k.n++
		if len(k.samples) < 3 {
			k.samples = append(k.samples, fmt.Sprintf("at %v, %d B, after %v: %v", at.Round(time.Millisecond), size,
				lat.Round(time.Millisecond), err))
		}
	}
	if lat >= slowThreshold {
		op := slowOp{cmd: cmdNames[cmd], size: size, lat: lat, at: at}
		if err != nil {
			op.err = err.Error()
		}
		s.slow = append(s.slow, op)
		if len(s.slow) > 40 {
			sortSlow(s.slow)
			s.slow = s.slow[:20]
		}
	}
}

// worker is one client: its own connection, its own keys, one request at a time.
type worker struct {
	id    int
	cfg   *config
	c     *redis.Client
	rng   *rand.Rand
	vals  *values
	t0    time.Time
	keys  []string
	slots []uint16
	state []keyState

	counter     string
	counterSlot uint16
	cnt         int64 // counter value last seen (INCR reply or read)
	cntUnknown  int64 // INCRs since then whose outcome is unknown
	lostIncrs   []lostWrite
	overcount   int64 // counter above every INCR sent: an INCR applied twice
	delMismatch int   // DEL replies that disagree with the keys' known state

	st   stats
	lost []lostWrite

	// The request in flight, for the watchdog: start (UnixNano, 0 when idle), command and size.
	busySince atomic.Int64
	busyCmd   atomic.Int32
	busySize  atomic.Int64
}

func newWorker(id int, cfg *config, vals *values, prefix string) *worker {
	w := &worker{id: id, cfg: cfg, vals: vals, rng: rand.New(rand.NewPCG(uint64(id), 0x50a4)),
		c: redis.NewClient(&redis.Options{Addr: cfg.addr, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second,
			ReadTimeout: cfg.opTimeout, WriteTimeout: cfg.opTimeout}),
		counter: fmt.Sprintf("%s:c%d:n", prefix, id), st: stats{errs: map[string]*errKind{}}}
	w.counterSlot = topology.Slot([]byte(w.counter))
	for i := 0; i < cfg.keys; i++ {
		k := fmt.Sprintf("%s:c%d:k%d", prefix, id, i)
		w.keys = append(w.keys, k)
		w.slots = append(w.slots, topology.Slot([]byte(k)))
	}
	w.state = make([]keyState, cfg.keys)
	return w
}

// distinct returns n different key indexes.
func (w *worker) distinct(n int) []int {
	idx := make([]int, 0, n)
	for len(idx) < n {
		i := w.rng.IntN(len(w.keys))
		dup := false
		for _, j := range idx {
			dup = dup || j == i
		}
		if !dup {
			idx = append(idx, i)
		}
	}
	return idx
}

func (w *worker) expectedSize(idx ...int) int {
	n := 0
	for _, i := range idx {
		n += int(w.state[i].cur.size)
	}
	return n
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.step()
	}
}

// step sends one request of the mix and checks its reply.
func (w *worker) step() {
	ctx := context.Background() // the client's read and write timeouts bound every request
	cmd, size := cmdDEL, 0
	var idx []int
	switch p := w.rng.IntN(100); {
	case p < 28:
		cmd, idx = cmdSET, []int{w.rng.IntN(len(w.keys))}
	case p < 56:
		cmd, idx = cmdGET, []int{w.rng.IntN(len(w.keys))}
	case p < 66:
		cmd = cmdINCR
	case p < 78:
		cmd, idx = cmdMGET, w.distinct(2+w.rng.IntN(3))
	case p < 88:
		cmd, idx = cmdMSET, w.distinct(2+w.rng.IntN(3))
	case p < 94:
		idx = []int{w.rng.IntN(len(w.keys))}
	default:
		idx = w.distinct(2 + w.rng.IntN(2))
	}

	// Build the request before the clock starts.
	var vals [][]byte
	var vers []version
	if cmd == cmdSET || cmd == cmdMSET {
		for range idx {
			b, v := w.vals.pick(w.rng)
			vals, vers = append(vals, b), append(vers, v)
			size += len(b)
		}
	} else if cmd == cmdGET || cmd == cmdMGET {
		size = w.expectedSize(idx...)
	}
	ph := phase.Load()
	start := time.Now()
	w.busyCmd.Store(int32(cmd))
	w.busySize.Store(int64(size))
	w.busySince.Store(start.UnixNano())
	var err error
	switch cmd {
	case cmdSET:
		err = w.c.Set(ctx, w.keys[idx[0]], vals[0], 0).Err()
	case cmdGET:
		var s string
		s, err = w.c.Get(ctx, w.keys[idx[0]]).Result()
		got := version{}
		if err == nil {
			got = versionOf(s)
		} else if errors.Is(err, redis.Nil) {
			err = nil
		}
		if err == nil {
			w.check(idx[0], got, false)
		}
	case cmdINCR:
		var n int64
		n, err = w.c.Incr(ctx, w.counter).Result()
		if err == nil {
			w.incrReply(n)
		} else {
			w.cntUnknown++
		}
	case cmdMGET:
		keys := make([]string, len(idx))
		for j, i := range idx {
			keys[j] = w.keys[i]
		}
		var res []any
		res, err = w.c.MGet(ctx, keys...).Result()
		if err == nil && len(res) != len(idx) {
			err = fmt.Errorf("MGET of %d keys answered %d values", len(idx), len(res))
		}
		if err == nil {
			for j, i := range idx {
				got := version{}
				if s, ok := res[j].(string); ok {
					got = versionOf(s)
				}
				w.check(i, got, false)
			}
		}
	case cmdMSET:
		args := make([]any, 0, 2*len(idx))
		for j, i := range idx {
			args = append(args, w.keys[i], vals[j])
		}
		err = w.c.MSet(ctx, args...).Err()
	case cmdDEL:
		keys := make([]string, len(idx))
		for j, i := range idx {
			keys[j] = w.keys[i]
		}
		var n int64
		n, err = w.c.Del(ctx, keys...).Result()
		if err == nil {
			want, sure := int64(0), true
			for _, i := range idx {
				sure = sure && len(w.state[i].unknown) == 0
				if w.state[i].cur.present {
					want++
				}
			}
			if sure && n != want {
				w.delMismatch++
				w.lost = append(w.lost, lostWrite{key: keys[0], slot: w.slots[idx[0]], class: "DEL count",
					want: fmt.Sprintf("DEL %d keys = %d", len(keys), want), got: fmt.Sprint(n), at: start.Sub(w.t0)})
			}
		}
		vers = make([]version, len(idx)) // all absent
	}
	lat := time.Since(start)
	w.busySince.Store(0)
	if vers != nil {
		for j, i := range idx {
			w.wrote(i, vers[j], err == nil)
		}
	}
	w.st.add(cmd, ph, start, lat, size, err, w.t0)
}

func (w *worker) wrote(i int, v version, acked bool) {
	s := &w.state[i]
	if !acked {
		s.unknown = append(s.unknown, v)
		return
	}
	s.push(s.cur)
	s.cur, s.unknown = v, s.unknown[:0]
}

// check compares a value read with what the key must hold.
func (w *worker) check(i int, got version, readback bool) {
	s := &w.state[i]
	if got == s.cur {
		s.unknown = s.unknown[:0]
		return
	}
	for _, u := range s.unknown {
		if got == u { // a write with an unknown outcome did happen
			s.push(s.cur)
			s.cur, s.unknown = got, s.unknown[:0]
			return
		}
	}
	class := "wrong value"
	if !got.present {
		class = "missing"
	} else {
		for _, p := range s.prev {
			if p == got {
				class = "stale"
			}
		}
	}
	w.lost = append(w.lost, lostWrite{key: w.keys[i], slot: w.slots[i], class: class, want: s.cur.String(),
		got: got.String(), at: time.Since(w.t0), readback: readback})
	s.push(s.cur)
	s.cur, s.unknown = got, s.unknown[:0] // count each loss once
}

// incrReply checks an INCR's reply against the INCRs sent since the counter was last seen.
func (w *worker) incrReply(n int64) {
	lo, hi := w.cnt+1, w.cnt+1+w.cntUnknown
	w.counterCheck(n, lo, hi, false)
}

func (w *worker) counterCheck(n, lo, hi int64, readback bool) {
	switch {
	case n < lo:
		w.lostIncrs = append(w.lostIncrs, lostWrite{key: w.counter, slot: w.counterSlot, class: "counter behind",
			want: fmt.Sprintf(">= %d", lo), got: fmt.Sprint(n), at: time.Since(w.t0), readback: readback})
	case n > hi:
		w.overcount += n - hi
	}
	w.cnt, w.cntUnknown = n, 0
}

// readBack reads every key and the counter after the run; a read is retried a few times if it fails.
func (w *worker) readBack() (errs []string) {
	ctx := context.Background()
	get := func(k string) (version, error) {
		var err error
		for try := 0; try < 5; try++ {
			var s string
			s, err = w.c.Get(ctx, k).Result()
			if err == nil {
				return versionOf(s), nil
			}
			if errors.Is(err, redis.Nil) {
				return version{}, nil
			}
			time.Sleep(time.Second)
		}
		return version{}, err
	}
	for i, k := range w.keys {
		got, err := get(k)
		if err != nil {
			errs = append(errs, fmt.Sprintf("GET %s: %v", k, err))
			continue
		}
		w.check(i, got, true)
	}
	var n int64
	var err error
	for try := 0; try < 5; try++ {
		if n, err = w.c.Get(ctx, w.counter).Int64(); err == nil || errors.Is(err, redis.Nil) {
			err = nil
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return append(errs, fmt.Sprintf("GET %s: %v", w.counter, err))
	}
	w.counterCheck(n, w.cnt, w.cnt+w.cntUnknown, true)
	return errs
}
