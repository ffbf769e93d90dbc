package loadgen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newWorker() *worker {
	return &worker{cfg: &Config{Prefix: "t", KeysPerWorker: 1}, may: map[string][]string{},
		ackedAt: map[string]time.Time{}}
}

var errLost = errors.New("connection lost")

// TestChecks: each reply a worker gets is checked against what it wrote; what no Redis could answer is a
// bad reply, an acknowledged write missing is a loss, and a write with an unknown outcome excuses either.
func TestChecks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		run        func(w *worker)
		lost, bad  int
		badContain string
	}{
		{"writes read back", func(w *worker) {
			w.wrote(nil, "a", "1")
			w.read("a", "1")
			w.deleted("a", 1)
			w.wrote(nil, "a", "")
			w.read("a", "")
			w.deleted("a", 0)
		}, 0, 0, ""},
		{"a lost SET", func(w *worker) { w.wrote(nil, "a", "1"); w.read("a", "") }, 1, 0, ""},
		{"a lost DEL", func(w *worker) { w.wrote(nil, "a", "1"); w.deleted("a", 1); w.wrote(nil, "a", ""); w.read("a", "1") }, 1, 0, ""},
		{"DEL of a key written", func(w *worker) { w.wrote(nil, "a", "1"); w.deleted("a", 0) }, 1, 0, ""},
		{"DEL of a key never written", func(w *worker) { w.deleted("a", 1) }, 1, 0, ""},
		{"DEL count 2", func(w *worker) { w.deleted("a", 2) }, 0, 1, "DEL a answered 2"},
		{"a failed write excuses either value", func(w *worker) {
			w.wrote(nil, "a", "1")
			w.wrote(errLost, "a", "2")
			w.deleted("a", 1)
			w.wrote(errLost, "b", "2")
			w.read("b", "")
		}, 0, 0, ""},
		{"a failed write does not excuse a third value", func(w *worker) {
			w.wrote(nil, "a", "1")
			w.wrote(errLost, "a", "2")
			w.read("a", "")
		}, 1, 0, ""},
		{"two failed writes excuse both", func(w *worker) {
			w.wrote(nil, "a", "1")
			w.wrote(errLost, "a", "2")
			w.wrote(errLost, "a", "")
			w.deleted("a", 0)
			w.read("a", "")
		}, 0, 0, ""},
		{"a failed DEL then DEL", func(w *worker) {
			w.wrote(nil, "a", "1")
			w.wrote(errLost, "a", "")
			w.deleted("a", 0)
		}, 0, 0, ""},
		{"a read settles an unsure key", func(w *worker) {
			w.wrote(errLost, "a", "2")
			w.read("a", "2")
			w.read("a", "")
		}, 1, 0, ""},
		{"a loss counts once", func(w *worker) { w.wrote(nil, "a", "1"); w.read("a", "x"); w.read("a", "x") }, 1, 0, ""},
		{"SET answered QUEUED", func(w *worker) { w.wroteOK("SET a", "QUEUED", nil) }, 0, 1, `answered "QUEUED"`},
		{"SET failed", func(w *worker) { w.wroteOK("SET a", "", errLost) }, 0, 0, ""},
		{"INCRs in order", func(w *worker) { w.incremented(1, nil); w.incremented(2, nil); w.incremented(3, nil) }, 0, 0, ""},
		{"an INCR ran twice", func(w *worker) { w.incremented(1, nil); w.incremented(3, nil) }, 0, 1, "one ran twice"},
		{"an unknown INCR that ran", func(w *worker) { w.incremented(1, nil); w.incremented(0, errLost); w.incremented(3, nil) }, 0, 0, ""},
		{"an unknown INCR that did not run", func(w *worker) { w.incremented(0, errLost); w.incremented(1, nil) }, 0, 0, ""},
		{"an INCR lost", func(w *worker) { w.incremented(1, nil); w.incremented(2, nil); w.incremented(2, nil) }, 1, 0, ""},
		{"MGET of the wrong length", func(w *worker) { w.mgot(nil, []any{"1"}, "a", "b") }, 0, 1, "answered 1 values"},
		{"MGET of an integer", func(w *worker) { w.mgot(nil, []any{int64(1), nil}, "a", "b") }, 0, 1, "int64"},
		{"MGET compared", func(w *worker) { w.wrote(nil, "a", "1"); w.mgot(nil, []any{"1", "x"}, "a", "b") }, 1, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorker()
			tc.run(w)
			if len(w.lost) != tc.lost || len(w.bad) != tc.bad {
				t.Fatalf("lost %v, bad %v; want %d and %d", w.lost, w.bad, tc.lost, tc.bad)
			}
			if tc.badContain != "" && !strings.Contains(w.bad[0], tc.badContain) {
				t.Errorf("bad reply %q, want it to say %q", w.bad[0], tc.badContain)
			}
		})
	}
}

// TestStaleReads: with StaleReads a read during the run proves nothing; at the check it counts.
func TestStaleReads(t *testing.T) {
	w := newWorker()
	w.cfg.StaleReads = true
	w.wrote(nil, "a", "1")
	w.read("a", "")
	if len(w.lost) != 0 {
		t.Fatalf("a stale read during the run counted: %v", w.lost)
	}
	w.checking = true
	w.read("a", "")
	if len(w.lost) != 1 {
		t.Fatalf("a missing value at the check did not count: %v", w.lost)
	}
}

// TestLossNamesItsRequest: a loss says which request found it and since when the value was known.
func TestLossNamesItsRequest(t *testing.T) {
	w := newWorker()
	w.wrote(nil, "a", "1")
	acked := w.ackedAt["a"]
	start := time.Now()
	w.record("DEL", start, nil, "a")
	w.deleted("a", 0)
	if len(w.lost) != 1 || w.lost[0].Seen != "DEL" || !w.lost[0].SeenAt.Equal(start) || !w.lost[0].AckedAt.Equal(acked) ||
		w.lost[0].Want != `"1"` {
		t.Fatalf("losses %+v", w.lost)
	}
	w.wrote(errLost, "b", "2")
	w.read("b", "2")
	if w.ackedAt["b"].IsZero() {
		t.Error("a read that settled b did not record when")
	}
}
