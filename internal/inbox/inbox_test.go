package inbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/slotproxy/slotproxy/resp"
)

// gnetConn models what an Inbox sees of a gnet connection: the bytes of the current read (buf) and the
// inbound ring (what earlier callbacks left unconsumed, which gnet copies there when a callback returns).
type gnetConn struct {
	ring, buf []byte
	peeks     int // Peek calls that had to assemble ring and buf: a copy of everything buffered
}

func (g *gnetConn) InboundBuffered() int { return len(g.ring) + len(g.buf) }

func (g *gnetConn) Peek(n int) ([]byte, error) {
	if n > 0 {
		panic("the Inbox only peeks everything")
	}
	if len(g.ring) == 0 {
		return g.buf, nil
	}
	g.peeks++
	return append(append([]byte(nil), g.ring...), g.buf...), nil
}

func (g *gnetConn) Discard(n int) (int, error) {
	if n <= 0 || n >= g.InboundBuffered() { // gnet: n <= 0 discards everything
		t := g.InboundBuffered()
		g.ring, g.buf = nil, nil
		return t, nil
	}
	if n <= len(g.ring) {
		g.ring = g.ring[n:]
		return n, nil
	}
	g.buf = g.buf[n-len(g.ring):]
	g.ring = nil
	return n, nil
}

func (g *gnetConn) Read(p []byte) (int, error) {
	n := copy(p, g.ring)
	g.ring = g.ring[n:]
	m := copy(p[n:], g.buf)
	g.buf = g.buf[m:]
	if n+m == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n + m, nil
}

// endCallback is what gnet does when OnTraffic returns.
func (g *gnetConn) endCallback() {
	g.ring = append(g.ring, g.buf...)
	g.buf = nil
}

// parseStream feeds stream to a CommandParser through an Inbox in the given chunks, the way a session does,
// and returns every request's arguments joined by spaces.
func parseStream(t testing.TB, stream []byte, cuts []int) ([]string, *gnetConn, int) {
	got, g, maxCap, _ := parseStreamOpt(t, stream, cuts, false)
	return got, g, maxCap
}

// isTooBig: a line over 64 KiB is refused when its end has not arrived yet and accepted when it arrives
// whole, as with Redis (resp.CommandParser's doc), so such an outcome depends on the cuts.
func isTooBig(err error) bool {
	return errors.Is(err, resp.ErrTooBigInline) || errors.Is(err, resp.ErrTooBigMbulkCount) ||
		errors.Is(err, resp.ErrTooBigBulkCount)
}

// parseStreamOpt is parseStream; with tooBigOK a "too big" error ends the stream, reported as refused.
func parseStreamOpt(t testing.TB, stream []byte, cuts []int, tooBigOK bool) (got []string, g *gnetConn, maxCap int,
	refused bool) {
	var x Inbox
	var p resp.CommandParser
	g = &gnetConn{}
	prev := 0
	for _, cut := range append(cuts, len(stream)) {
		if cut < prev || cut > len(stream) {
			continue
		}
		g.buf = stream[prev:cut]
		prev = cut
		buf, ok := x.Bytes(g, p.Need())
		if ok {
			off := 0
			for off < len(buf) {
				args, n, err := p.Parse(buf[off:])
				if err != nil {
					if tooBigOK && isTooBig(err) {
						return got, g, maxCap, true
					}
					t.Fatalf("parse: %v", err)
				}
				if n == 0 {
					break
				}
				off += n
				got = append(got, string(bytes.Join(args, []byte(" "))))
				if len(args) > 0 && bytes.Equal(args[0], []byte("TAKE")) {
					x.Take()
				}
			}
			x.Done(g, buf, off)
		}
		maxCap = max(maxCap, cap(x.b))
		g.endCallback()
	}
	if g.InboundBuffered() != 0 {
		t.Fatalf("gnet still holds %d bytes: the Inbox must take everything", g.InboundBuffered())
	}
	return got, g, maxCap, false
}

func stream(cmds ...[]string) ([]byte, []string) {
	var b []byte
	var want []string
	for _, c := range cmds {
		b = resp.AppendCommandStrings(b, c...)
		want = append(want, string(bytes.Join(toBytes(c), []byte(" "))))
	}
	return b, want
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// TestEveryCut splits a pipeline of small and large requests at every byte and at pairs of points: every
// request comes out whole, once, in order, gnet never keeps bytes, and Peek never has to assemble a copy.
// The value sizes cross minGrow (4 KiB) and gnet's 64 KiB read.
func TestEveryCut(t *testing.T) {
	for _, tc := range []struct {
		name       string
		value      int
		step, pair int // single cuts every step bytes; pairs of cuts every pair bytes
	}{
		{"5000", 5000, 1, 97},
		{"90000", 90000, 509, 4999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := string(bytes.Repeat([]byte("v\r\n"), tc.value/3))
			in, want := stream(
				[]string{"SET", "k", "small"},
				[]string{"SET", "big", big},
				[]string{"GET", "k"},
				[]string{"TAKE", big},
				[]string{"PING"},
			)
			check := func(cuts []int) {
				t.Helper()
				got, g, _ := parseStream(t, in, cuts)
				if len(got) != len(want) {
					t.Fatalf("cuts %v: %d requests, want %d", cuts, len(got), len(want))
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("cuts %v: request %d is %.40q, want %.40q", cuts, i, got[i], want[i])
					}
				}
				if g.peeks != 0 {
					t.Fatalf("cuts %v: %d assembling Peeks", cuts, g.peeks)
				}
			}
			for cut := 0; cut <= len(in); cut += tc.step {
				check([]int{cut})
			}
			for a := 0; a < len(in); a += tc.pair {
				for b := a + 1; b < len(in); b += tc.pair {
					check([]int{a, b})
				}
			}
		})
	}
}

// TestGrowsWithArrivals: a request declaring 512 MiB of which 1 MiB arrives makes the Inbox hold at most
// twice what arrived, and a large request that arrives in pieces ends in a buffer of about its own size.
func TestGrowsWithArrivals(t *testing.T) {
	head := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n")
	var x Inbox
	var p resp.CommandParser
	g := &gnetConn{buf: head}
	b, ok := x.Bytes(g, p.Need())
	if !ok {
		t.Fatal("a header alone: not ok at Need 0")
	}
	if _, n, _ := p.Parse(b); n != 0 {
		t.Fatal("parsed an incomplete request")
	}
	x.Done(g, b, 0)
	need := p.Need()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	arrived := len(head)
	for i := 0; i < 16; i++ {
		g.buf = chunk
		if _, ok := x.Bytes(g, need); ok {
			t.Fatal("ok before the value arrived")
		}
		arrived += len(chunk)
	}
	if c := cap(x.b); c > 2*arrived {
		t.Errorf("holding %d bytes of capacity for %d arrived (declared 512 MiB)", c, arrived)
	}

	// A 10 MB value in 64 KiB reads: the final buffer is about the request's size.
	val := bytes.Repeat([]byte("y"), 10_000_000)
	in, _ := stream([]string{"SET", "k", string(val)})
	var cuts []int
	for i := 64 << 10; i < len(in); i += 64 << 10 {
		cuts = append(cuts, i)
	}
	_, _, maxCap := parseStream(t, in, cuts)
	if maxCap > 2*len(in) {
		t.Errorf("a %d-byte request grew the Inbox to %d", len(in), maxCap)
	}
}

// FuzzSplitPipeline: any pipeline of requests, split at any two points, parses to the same requests.
func FuzzSplitPipeline(f *testing.F) {
	f.Add([]byte("*1\r\n$4\r\nPING\r\n"), 3, 9)
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$70000\r\n"+string(bytes.Repeat([]byte("a"), 70000))+"\r\nPING\r\n"), 20, 65536)
	f.Add([]byte("GET a\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"), 0, 1)
	f.Fuzz(func(t *testing.T, in []byte, a, b int) {
		var whole []string
		var p resp.CommandParser
		off := 0
		for off < len(in) {
			args, n, err := p.Parse(in[off:])
			if err != nil || n == 0 {
				break
			}
			off += n
			whole = append(whole, string(bytes.Join(args, []byte(" "))))
		}
		in = in[:off] // only the complete, valid requests
		if a < 0 {
			a = -a
		}
		if b < 0 {
			b = -b
		}
		cuts := []int{a % (len(in) + 1), b % (len(in) + 1)}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		got, _, _, refused := parseStreamOpt(t, in, cuts, true)
		if refused {
			return // a line over 64 KiB cut before its end: refused, as Redis does
		}
		if len(got) != len(whole) {
			t.Fatalf("cuts %v: %d requests, want %d", cuts, len(got), len(whole))
		}
		for i := range whole {
			if got[i] != whole[i] {
				t.Fatalf("cuts %v: request %d differs", cuts, i)
			}
		}
	})
}

// TestRelease: an Inbox that held a frame across reads lets its buffer go on Release (back to Buffers, which
// keeps those of 64 KiB and more), and works again from nothing after it.
func TestRelease(t *testing.T) {
	for _, size := range []int{100, 100 << 10} {
		var bufs Buffers
		x := Inbox{Buffers: &bufs}
		frame := testFrame(size)
		g := &gnetConn{buf: frame[:len(frame)-1]}
		if _, ok := x.Bytes(g, len(frame)); ok {
			t.Fatal("a partial frame was handed out")
		}
		g.endCallback()
		g.buf = frame[len(frame)-1:]
		buf, ok := x.Bytes(g, len(frame))
		if !ok || !bytes.Equal(buf, frame) {
			t.Fatalf("frame of %d: Bytes %d bytes, %v", size, len(buf), ok)
		}
		x.Done(g, buf, len(buf))
		held := cap(x.b)
		x.Release(0)
		pooled := 0
		if held >= 64<<10 {
			pooled = held
		}
		if x.b != nil || bufs.total != pooled {
			t.Fatalf("frame of %d, after Release: the Inbox holds %d bytes, Buffers %d of the %d it held", size,
				cap(x.b), bufs.total, held)
		}
		g.buf = []byte("*1\r\n$4\r\nPING\r\n")
		if buf, ok := x.Bytes(g, 0); !ok || string(buf) != "*1\r\n$4\r\nPING\r\n" {
			t.Fatalf("Bytes after Release: %q, %v", buf, ok)
		}
	}
}

// testFrame is a SET request with a value of size bytes.
func testFrame(size int) []byte {
	return []byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n", size, strings.Repeat("v", size)))
}
