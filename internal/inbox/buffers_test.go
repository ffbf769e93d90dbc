package inbox

import "testing"

func TestBuffers(t *testing.T) {
	var b Buffers
	for _, tc := range []struct {
		n, wantCap int
	}{
		{100, 100},               // small: plain allocation
		{64 << 10, 64 << 10},     // the smallest class
		{64<<10 + 1, 128 << 10},  // rounded up
		{16 << 20, 16 << 20},     // the largest class
		{16<<20 + 1, 16<<20 + 1}, // too large: plain allocation
	} {
		if got := cap(b.Get(tc.n)); got != tc.wantCap {
			t.Errorf("Get(%d): cap %d, want %d", tc.n, got, tc.wantCap)
		}
	}
	buf := b.Get(100 << 10)
	buf = append(buf, "x"...)
	b.Put(buf)
	again := b.Get(90 << 10)
	if cap(again) != cap(buf) || &again[:1][0] != &buf[0] || len(again) != 0 {
		t.Errorf("a buffer put back is not reused empty")
	}
	b.Put(make([]byte, 0, 100<<10)) // not a power of two: not one of Get's
	b.Put(buf[1:])                  // a slice of a buffer, not the buffer
	if b.total != 0 {
		t.Errorf("kept %d bytes of buffers Get did not make", b.total)
	}
	for i := 0; i < 10; i++ {
		b.Put(make([]byte, 0, 16<<20))
	}
	if b.total > keepBytes {
		t.Errorf("kept %d bytes, limit %d", b.total, keepBytes)
	}
	var nilBuffers *Buffers
	nilBuffers.Put(nilBuffers.Get(1 << 20)) // a nil *Buffers allocates and keeps nothing
}
