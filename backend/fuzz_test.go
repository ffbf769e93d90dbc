package backend

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/resp"
)

// FuzzConnReplies feeds a Conn with requests in flight arbitrary reply bytes, cut into reads where the fuzzer
// says, through OnTraffic, and checks it against a model: the replies found by scanning all the bytes at
// once are matched in order to the fifo's entries; a request gets exactly its reply (or is parked for a
// retry, for TRYAGAIN and friends); if the stream goes out of step (a malformed reply, or a reply with no
// request) the connection is closed and the requests still in flight are resent (idempotent) or failed; no
// request is ever answered twice, nor more replies delivered than there were requests.
//
// OnTraffic is driven directly with a stand-in for gnet.Conn (fuzzConn) and for the EventLoop's Close (which
// gnet runs synchronously, calling OnClose): a real engine is far too slow per input, and every other test
// in this package uses one.
//
// layout picks the fifo: 1-8 entries, each a request (idempotent or not), an expired request (nil) or an
// ASKING marker. cuts are the read sizes (each byte+1, used in turn; none: one read).
func FuzzConnReplies(f *testing.F) {
	seeds := []string{
		"+OK\r\n+OK\r\n+OK\r\n+OK\r\n",
		"$5\r\nhello\r\n$0\r\n\r\n$-1\r\n:42\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n*0\r\n",
		"*1\r\n*1\r\n*1\r\n*1\r\n+deep\r\n",
		strings.Repeat("*1\r\n", 9000) + ":1\r\n", // deeper than resp's maxDepth
		"$1099511627776\r\n",                      // the largest length resp accepts, never arriving
		"$1099511627777\r\n",                      // one more
		"*1099511627776\r\n:1\r\n",
		"$9223372036854775807\r\n",
		"$99999999999999999999\r\n",
		"$-2\r\n", "*-2\r\n", "%-1\r\n", "$01\r\na\r\n", "$-0\r\n", ":\r\n",
		"%1\r\n+k\r\n:1\r\n~2\r\n#t\r\n,1.5\r\n(123456789012345678901234567890\r\n_\r\n",
		"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
		">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
		"=8\r\ntxt:abcd\r\n!11\r\nERR bad one\r\n",
		"$?\r\n;4\r\nabcd\r\n;0\r\n", "*?\r\n:1\r\n.\r\n",
		"-MOVED 3999 127.0.0.1:6381\r\n", "-MOVED 3999\r\n", "-MOVED x 1.2.3.4:5\r\n", "-MOVED 1 :\r\n",
		"-MOVED 1 [::1]:\r\n", "-MOVED 1 ?:7000\r\n", "-MOVED 1 :7000\r\n", "-MOVED 1 [::1]:7000\r\n",
		"-MOVED 1 a:b:c\r\n", "-MOVED 99999999999999999999 a:1\r\n", "-MOVED  1  a:1\r\n", "-MOVED 1 a:1 extra\r\n",
		"-ASK 1 nohostport\r\n", "-ASK\r\n", "-ASK 1 127.0.0.1:1\r\n",
		"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "-TRYAGAIN\r\n",
		"-LOADING Redis is loading the dataset in memory\r\n", "-CLUSTERDOWN The cluster is down\r\n",
		"-MASTERDOWN Link with MASTER is down\r\n", "-READONLY You can't write against a read only replica.\r\n",
		"-\r\n", "-M\r\n", "-ERR x\r\n",
		"+OK\n", "+OK\r\r\n", "\r\n", "?\r\n", "\x00", "$3\r\nabcXY", "*2\r\n:1\r\n?\r\n",
		"+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+UNSOLICITED\r\n",
	}
	for i, s := range seeds {
		f.Add(uint16(i*2654435761), []byte(nil), []byte(s))
		f.Add(uint16(0x5555), []byte{0}, []byte(s))             // one byte per read
		f.Add(uint16(0x0003), []byte{2, 0, 6, 1, 3}, []byte(s)) // headers split
	}
	f.Fuzz(func(t *testing.T, layout uint16, cuts []byte, data []byte) {
		fz := newFuzzConn(layout)
		fz.feed(data, cuts)
		fz.check(t, data)
	})
}

const (
	entryRequest = iota // not idempotent
	entryIdempotent
	entryExpired
	entryAsking
)

// fuzzRig is a Conn on a Pool with a stand-in loop, and the fifo it started with.
type fuzzRig struct {
	pool    *Pool
	conn    *Conn
	gc      *fuzzConn
	loop    *fuzzLoop
	entries []int      // kind of each fifo entry, front first
	reqs    []*Request // per entry; nil for expired and ASKING
	got     map[*Request][][]byte
}

func newFuzzConn(layout uint16) *fuzzRig {
	cfg := testConfig()
	cfg.MaxRedirects = 0 // redirects are delivered as they are: following one would dial
	z := &fuzzRig{got: make(map[*Request][][]byte), loop: &fuzzLoop{}, gc: &fuzzConn{}}
	topo := &fixedTopo{}
	z.pool = NewPool(z.loop, &cfg, topo, slog.New(slog.DiscardHandler), func(time.Duration) {})
	z.conn = &Conn{pool: z.pool, addr: "127.0.0.1:7000", state: stateOpen, gc: z.gc}
	z.pool.nodes[z.conn.addr] = &node{addr: z.conn.addr, conns: []*Conn{z.conn}}
	z.loop.conn = z.conn
	n := 1 + int(layout&7)
	layout >>= 3
	for i := range n {
		kind := int(layout>>(2*(i%6))) & 3
		z.entries = append(z.entries, kind)
		var r *Request
		switch kind {
		case entryRequest, entryIdempotent:
			r = &Request{Raw: []byte("*1\r\n$4\r\nPING\r\n"), Idempotent: kind == entryIdempotent,
				Deadline: time.Now().Add(time.Hour).UnixNano(), Sink: z}
			z.conn.fifo.Push(r)
		case entryExpired:
			z.conn.fifo.Push(nil)
		case entryAsking:
			z.conn.fifo.Push(askingMarker)
		}
		z.reqs = append(z.reqs, r)
	}
	return z
}

func (z *fuzzRig) Reply(r *Request, reply []byte) {
	z.got[r] = append(z.got[r], bytes.Clone(reply))
}

// feed hands data to OnTraffic in reads of the sizes cuts gives, as gnet would, until the pool closes the
// connection. Bytes left unconsumed by one call are kept for the next, in fresh memory: the old buffer is
// scribbled over, so a Conn that keeps gnet's bytes past a callback is caught.
func (z *fuzzRig) feed(data, cuts []byte) {
	for i := 0; len(data) > 0 && !z.loop.closed; i++ {
		n := len(data)
		if len(cuts) > 0 {
			n = min(int(cuts[i%len(cuts)])+1, n)
		}
		z.gc.arrive(data[:n])
		data = data[n:]
		z.conn.OnTraffic(z.gc)
		z.pool.Flush()
	}
}

// check compares what happened with the model.
func (z *fuzzRig) check(t *testing.T, data []byte) {
	// The model: scan everything at once.
	var sc resp.ReplyScanner
	var replies [][]byte
	outOfStep := false
	for off := 0; off < len(data); {
		n, err := sc.Scan(data[off:])
		if err != nil {
			outOfStep = true
			break
		}
		if n == 0 {
			break
		}
		if len(replies) == len(z.entries) {
			outOfStep = true // a reply with no request
			break
		}
		replies = append(replies, data[off:off+n])
		off += n
	}
	if outOfStep != z.loop.closed {
		t.Fatalf("connection closed = %v, want %v (replies in the stream: %d, fifo: %v)",
			z.loop.closed, outOfStep, len(replies), z.entries)
	}

	parked := map[*Request]int{}
	for _, r := range z.pool.waiting {
		parked[r]++
	}
	delivered := 0
	for i, r := range z.reqs {
		if r == nil {
			continue
		}
		got, park := z.got[r], parked[r]
		delivered += len(got)
		if len(got)+park > 1 {
			t.Fatalf("entry %d: %d replies and parked %d times, want one outcome", i, len(got), park)
		}
		switch {
		case i < len(replies):
			reply := replies[i]
			switch classify(reply) {
			case errOther, errMoved, errAsk:
				// A redirect cannot be followed with MaxRedirects 0: it fails with an -ERR naming it.
				ok := len(got) == 1 && (bytes.Equal(got[0], reply) ||
					classify(reply) != errOther && bytes.HasPrefix(got[0], []byte("-ERR ")))
				if !ok {
					t.Fatalf("entry %d: got %q, want its reply %q", i, got, reply)
				}
			default:
				if park != 1 || r.lastErr != string(reply[1:len(reply)-2]) {
					t.Fatalf("entry %d: reply %q: parked %d times with %q, want parked once for a retry", i, reply, park, r.lastErr)
				}
			}
		case !z.loop.closed:
			if len(got)+park != 0 {
				t.Fatalf("entry %d has no reply yet but got %q (parked %d)", i, got, park)
			}
		case r.Idempotent:
			if park != 1 {
				t.Fatalf("entry %d (idempotent) lost with its connection: got %q, parked %d; want a resend", i, got, park)
			}
		default:
			if want := lostErr(z.conn.addr); len(got) != 1 || !bytes.Equal(got[0], want) {
				t.Fatalf("entry %d lost with its connection: got %q, want %q", i, got, want)
			}
		}
	}
	if delivered > len(z.entries) {
		t.Fatalf("%d replies delivered for %d requests", delivered, len(z.entries))
	}
	if z.loop.closed && z.conn.fifo.Len() != 0 {
		t.Fatalf("closed connection still holds %d fifo entries", z.conn.fifo.Len())
	}
}

// fuzzConn stands in for gnet.Conn with the methods OnTraffic and flush use (an Inbox's Source, plus Write);
// any other method panics (nil embedded interface).
type fuzzConn struct {
	gnet.Conn
	buf []byte // this read's memory
	in  []byte // its unconsumed bytes
}

// arrive adds bytes as a new read would: the unconsumed bytes move to new memory, and the old memory is
// scribbled over, as gnet reuses its read buffer.
func (f *fuzzConn) arrive(b []byte) {
	old := f.buf
	f.buf = append(append(make([]byte, 0, len(f.in)+len(b)), f.in...), b...)
	f.in = f.buf
	for i := range old {
		old[i] = '#'
	}
}

func (f *fuzzConn) InboundBuffered() int { return len(f.in) }

func (f *fuzzConn) Peek(n int) ([]byte, error) {
	if n > len(f.in) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = len(f.in)
	}
	return f.in[:n], nil
}

// Discard is gnet's: n <= 0 (and n >= buffered) discards everything.
func (f *fuzzConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(f.in) {
		l := len(f.in)
		f.in = f.in[len(f.in):]
		return l, nil
	}
	f.in = f.in[n:]
	return n, nil
}

func (f *fuzzConn) Read(p []byte) (int, error) {
	n := copy(p, f.in)
	f.in = f.in[n:]
	if n == 0 && len(p) > 0 {
		return 0, io.ErrShortBuffer
	}
	return n, nil
}

func (f *fuzzConn) Write(b []byte) (int, error)     { return len(b), nil }
func (f *fuzzConn) Writev(bs [][]byte) (int, error) { return 0, nil }

// fuzzLoop stands in for the EventLoop: Close runs OnClose at once, as gnet's does.
type fuzzLoop struct {
	gnet.EventLoop
	conn   *Conn
	closed bool
}

func (l *fuzzLoop) Close(gnet.Conn) error {
	if !l.closed {
		l.closed = true
		l.conn.OnClose(nil)
	}
	return nil
}
