// Package inbox owns the bytes of a frame (a client request or a backend reply) that spans reads.
//
// gnet hands each readable event's bytes to the callback in the loop's shared read buffer, and whatever the
// callback leaves unconsumed is copied into the connection's inbound ring; Peek then assembles ring and new
// bytes into yet another copy. For a frame larger than one read that is a copy per read plus a copy of the
// whole frame at the end, and for a 100 MiB value several hundred MiB of garbage. An Inbox takes the bytes out
// of gnet instead: a frame that arrives whole is parsed in gnet's buffer without a copy, and the rest of a
// frame is appended to the Inbox as it arrives, so every byte is copied once, into memory the proxy owns and
// can hand on (Take) as the request's own buffer.
//
// An Inbox never grows to more than twice the bytes that actually arrived, whatever length a frame declares.
// The zero value is ready; an Inbox belongs to one connection's event loop.
package inbox

// Source is the part of gnet.Conn an Inbox reads from.
type Source interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Read(p []byte) (int, error)
	InboundBuffered() int
}

const (
	minGrow = 4 << 10
	// keepMax is the largest buffer kept once it holds little: one large frame must not pin its memory.
	keepMax = 1 << 20
)

// Inbox holds the unconsumed bytes of a connection, oldest first.
type Inbox struct {
	Buffers *Buffers // where large buffers come from; nil allocates

	b       []byte
	fromBox bool // the slice returned by Bytes is b (not gnet's buffer)
	taken   bool // the caller took b's memory: Done must not reuse it
}

// Len is the number of bytes the Inbox holds.
func (x *Inbox) Len() int { return len(x.b) }

// Buffered is every unconsumed byte of the connection: the Inbox's and gnet's.
func (x *Inbox) Buffered(src Source) int { return len(x.b) + src.InboundBuffered() }

// Bytes returns every unconsumed byte, oldest first, or ok == false while fewer than need are there (the
// bytes that arrived are kept, so waiting costs nothing more than their one copy). The slice is valid until
// Done, which the caller must call before the callback returns when ok is true.
func (x *Inbox) Bytes(src Source, need int) (buf []byte, ok bool) {
	if len(x.b) == 0 {
		if src.InboundBuffered() < need {
			x.fill(src, need)
			return nil, false
		}
		x.fromBox = false
		buf, _ = src.Peek(-1)
		return buf, true
	}
	x.fill(src, need)
	if len(x.b) < need {
		return nil, false
	}
	x.fromBox = true
	return x.b, true
}

// fill moves everything gnet holds into the Inbox.
func (x *Inbox) fill(src Source, need int) {
	avail := src.InboundBuffered()
	if avail == 0 {
		return
	}
	want := len(x.b) + avail
	if want > cap(x.b) {
		// To the frame's end when that is less than double what has arrived, else double (a reply of many
		// elements needs one more byte at a time: growing to what arrived would copy everything on every
		// read); never more than twice what has arrived.
		c := 2 * want
		if need > want && need < c {
			c = need
		}
		c = max(c, minGrow)
		nb := append(x.Buffers.Get(c), x.b...)
		x.Buffers.Put(x.b) // only the Inbox uses it: Bytes has not handed it out, or Done took it back
		x.b = nb
	}
	n, _ := src.Read(x.b[len(x.b):want])
	x.b = x.b[:len(x.b)+n]
}

// Take hands the memory of the slice Bytes returned to the caller, who may keep sub-slices of it for good
// (and give a sub-slice that starts at its first byte back to Buffers.Put when done). It is a no-op,
// returning false, when that slice was gnet's buffer (valid only in the callback).
func (x *Inbox) Take() bool {
	if x.fromBox {
		x.taken = true
	}
	return x.fromBox
}

// Done says the first off bytes of the slice Bytes returned are consumed; the rest is kept for the next call.
func (x *Inbox) Done(src Source, buf []byte, off int) {
	tail := buf[off:]
	if !x.fromBox {
		if len(tail) > 0 {
			x.b = append(x.b[:0], tail...)
		}
		_, _ = src.Discard(-1) // everything: what was not consumed is in the Inbox now
		return
	}
	switch {
	case x.taken:
		x.b = append(make([]byte, 0, max(len(tail), minGrow)), tail...)
	case cap(x.b) > keepMax && len(tail) <= keepMax/4:
		old := x.b
		x.b = append(make([]byte, 0, max(len(tail), minGrow)), tail...)
		x.Buffers.Put(old)
	default:
		x.b = x.b[:copy(x.b, tail)]
	}
	x.fromBox, x.taken = false, false
}

// Reset drops every byte held.
func (x *Inbox) Reset() {
	if cap(x.b) > keepMax {
		if !x.taken {
			x.Buffers.Put(x.b)
		}
		x.b = nil
	}
	x.b = x.b[:0]
	x.fromBox, x.taken = false, false
}

// Release drops every byte held, and the memory that held them if it is more than keep bytes, for an Inbox
// that goes unused for a while.
func (x *Inbox) Release(keep int) {
	if x.taken {
		x.b = nil // the caller's now
	} else if cap(x.b) > keep {
		x.Buffers.Put(x.b)
		x.b = nil
	}
	x.b = x.b[:0]
	x.fromBox, x.taken = false, false
}

// Cap is the size of the buffer the Inbox holds.
func (x *Inbox) Cap() int { return cap(x.b) }
