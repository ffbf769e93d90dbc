package inbox

import "math/bits"

// Buffers recycles the large buffers of one event loop (an Inbox's memory, and a request that took it), so a
// stream of large values does not allocate, and have the garbage collector free, a buffer per value: SET of
// 100 KB values ran a third faster with it. Buffers are kept by power-of-two capacity, from minPooled to
// maxPooled, at most keepBytes in all. Not safe for concurrent use: one per loop. A nil *Buffers allocates.
type Buffers struct {
	free  [maxClass + 1][][]byte
	total int // bytes held in free
}

const (
	minClass  = 16 // 64 KiB
	maxClass  = 24 // 16 MiB
	keepBytes = 32 << 20
)

// class is the smallest k with 1<<k >= n.
func class(n int) int { return bits.Len(uint(n - 1)) }

// Get returns an empty buffer of capacity n at least.
func (b *Buffers) Get(n int) []byte {
	k := class(n)
	if b == nil || k < minClass || k > maxClass {
		return make([]byte, 0, n)
	}
	if f := b.free[k]; len(f) > 0 {
		buf := f[len(f)-1]
		f[len(f)-1] = nil
		b.free[k] = f[:len(f)-1]
		b.total -= cap(buf)
		return buf[:0]
	}
	return make([]byte, 0, 1<<k)
}

// Put hands back a buffer nobody uses any more (nor any slice of it).
func (b *Buffers) Put(buf []byte) {
	c := cap(buf)
	if b == nil || c == 0 || c&(c-1) != 0 { // only what Get made: exact powers of two
		return
	}
	k := class(c)
	if k < minClass || k > maxClass || b.total+c > keepBytes {
		return
	}
	b.free[k] = append(b.free[k], buf[:0])
	b.total += c
}
