package main

import (
	"cmp"
	"math"
	"math/bits"
	"regexp"
	"slices"
	"time"
)

// hist is a latency histogram with 8 buckets per power of two of microseconds (about 9 % wide), so a long
// run keeps no per-request records.
type hist struct{ n [64 * 8]int64 }

func (h *hist) add(d time.Duration) {
	us := uint64(max(d/time.Microsecond, 1))
	l := bits.Len64(us) - 1
	var sub uint64
	if l >= 3 {
		sub = us >> (l - 3) & 7
	} else {
		sub = us << (3 - l) & 7
	}
	h.n[l*8+int(sub)]++
}

func (h *hist) merge(o *hist) {
	for i := range h.n {
		h.n[i] += o.n[i]
	}
}

// quantile is the upper bound of the bucket that holds the q-quantile.
func (h *hist) quantile(q float64) time.Duration {
	var total int64
	for _, n := range h.n {
		total += n
	}
	if total == 0 {
		return 0
	}
	target := int64(math.Ceil(q * float64(total)))
	var cum int64
	for i, n := range h.n {
		cum += n
		if cum >= max(target, 1) {
			l, sub := i/8, i%8
			return time.Duration(math.Ldexp(1+float64(sub+1)/8, l) * float64(time.Microsecond))
		}
	}
	return 0
}

func sortSlow(s []slowOp) {
	slices.SortFunc(s, func(a, b slowOp) int { return cmp.Compare(b.lat, a.lat) })
}

var (
	addrRE = regexp.MustCompile(`[0-9]+(\.[0-9]+){3}:[0-9]+`)
	numRE  = regexp.MustCompile(`[0-9]+`)
)

// errKindOf is an error's text with addresses and numbers blanked, so errors of one kind count together.
func errKindOf(err error) string {
	s := addrRE.ReplaceAllString(err.Error(), "ADDR")
	s = numRE.ReplaceAllString(s, "N")
	if len(s) > 110 {
		s = s[:110] + "..."
	}
	return s
}

// merge adds the stats of o to s.
func (s *stats) merge(o *stats) {
	for i := range s.cmd {
		a, b := &s.cmd[i], &o.cmd[i]
		a.ops += b.ops
		a.errs += b.errs
		a.bytes += b.bytes
		a.lat.merge(&b.lat)
		if b.max > a.max {
			a.max, a.maxSize = b.max, b.maxSize
		}
	}
	for i := range s.phase {
		s.phase[i].ops += o.phase[i].ops
		s.phase[i].errs += o.phase[i].errs
		s.phase[i].max = max(s.phase[i].max, o.phase[i].max)
	}
	for kind, k := range o.errs {
		m := s.errs[kind]
		if m == nil {
			m = &errKind{}
			s.errs[kind] = m
		}
		m.n += k.n
		for _, smp := range k.samples {
			if len(m.samples) < 3 {
				m.samples = append(m.samples, smp)
			}
		}
	}
	s.slow = append(s.slow, o.slow...)
	sortSlow(s.slow)
	if len(s.slow) > 20 {
		s.slow = s.slow[:20]
	}
}

// slope is the least-squares slope of y over x and its standard error.
func slope(x, y []float64) (k, se float64) {
	n := float64(len(x))
	if len(x) < 3 {
		return 0, math.Inf(1)
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= n
	my /= n
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	if sxx == 0 {
		return 0, math.Inf(1)
	}
	k = sxy / sxx
	var ss float64
	for i := range x {
		r := y[i] - my - k*(x[i]-mx)
		ss += r * r
	}
	return k, math.Sqrt(ss / (n - 2) / sxx)
}
