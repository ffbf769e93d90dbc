package backend

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/fakeredis"
	"github.com/slotproxy/slotproxy/resp"
)

// deadlineBound is how late a request past its deadline may be answered: Tick runs every tickPeriod, and a
// machine busy with other tests adds a few milliseconds.
const deadlineBound = 4 * tickPeriod

// checkAtDeadline checks that a reply came at or after the request's deadline and within deadlineBound of it.
func checkAtDeadline(t *testing.T, c *call, at time.Time) {
	t.Helper()
	late := at.Sub(time.Unix(0, c.Deadline))
	if late < 0 || late > deadlineBound {
		t.Errorf("%s: answered %v after its deadline, want within [0, %v]", c.name, late, deadlineBound)
	}
}

// TestSilentNode: a node that stops answering costs its requests their deadline, not more. The request past
// its deadline gets an -ERR within deadlineBound; the connection that received nothing for StallTimeout (here
// the request's own timeout) is closed, so the other written requests on it are failed (not idempotent) or
// resent (idempotent) at once; and once the node answers again, requests are served on a new connection.
func TestSilentNode(t *testing.T) {
	gate := make(chan struct{}) // closed when the node speaks again
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		select {
		case <-gate:
		case <-c.Done():
			return
		}
		fakeredis.Default(c, args)
	})
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		srv.Set(k, "v-"+k)
	}
	cfg := testConfig()
	cfg.StallTimeout = 200 * time.Millisecond
	h := newHarness(t, cfg, srv)

	sent := time.Now()
	short := newCall(0, "GET", "k1").timeout(200 * time.Millisecond)
	write := newCall(0, "GET", "k2")             // written behind it, not idempotent
	read := newCall(0, "GET", "k3").idempotent() // written behind it, idempotent
	h.send(short, write, read)

	got, at := short.wait(t, 2*time.Second)
	if !bytes.HasPrefix(got, []byte("-ERR")) {
		t.Errorf("silent node: reply %q, want an -ERR", got)
	}
	t.Logf("reply at the deadline: %q", got)
	checkAtDeadline(t, short, at)

	// The stuck connection is closed: the written non-idempotent request fails when it closes.
	got, wat := write.wait(t, 2*time.Second)
	if want := lostErr(srv.Addr); !bytes.Equal(got, want) {
		t.Errorf("written request on the closed connection: reply %q, want %q", got, want)
	}
	// Stall detection starts at the first tick after the requests were written: one tick period late at most.
	if late := wat.Sub(sent.Add(cfg.StallTimeout)); late > deadlineBound+tickPeriod {
		t.Errorf("written request failed %v after StallTimeout, want within %v", late, deadlineBound+tickPeriod)
	}
	// The idempotent request is resent on a new connection (ConnsPerNode is 1, so the first one is gone).
	eventually(t, 2*time.Second, "the pool dials a second connection", func() bool { return srv.Accepted() == 2 })

	close(gate)
	late := newCall(0, "GET", "k4")
	h.send(late)
	late.expect(t, bulk("v-k4"))
	read.expect(t, bulk("v-k3")) // resent on the new connection
	if srv.Accepted() != 2 {
		t.Errorf("%d connections, want 2 (the stuck one closed and redialled)", srv.Accepted())
	}
	if n := short.count(); n != 1 {
		t.Errorf("the timed-out request got %d replies, want 1", n)
	}
}

// TestSlowNodeDoesNotBlockOthers: a request to another node is answered while a slow one is outstanding.
func TestSlowNodeDoesNotBlockOthers(t *testing.T) {
	slow := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[1]) == "slow" {
			c.Sleep(500 * time.Millisecond)
		}
		fakeredis.Default(c, args)
	})
	fast := fakeredis.Start(t, nil)
	slow.Set("slow", "tortoise")
	fast.Set("fast", "hare")
	h := newHarness(t, testConfig(), slow, fast)

	s := newCall(0, "GET", "slow")
	f := newCall(16383, "GET", "fast")
	h.send(s)
	h.send(f)
	_, fat := f.wait(t, 2*time.Second)
	if d := fat.Sub(f.sent); d > 100*time.Millisecond {
		t.Errorf("request to the fast node took %v while the slow node was busy, want < 100ms", d)
	}
	select {
	case <-s.done:
		t.Errorf("the slow request was answered before the fast one")
	default:
	}
	f.expect(t, bulk("hare"))
	s.expect(t, bulk("tortoise"))
}

// outOfStepServer answers GET key with the bulk "v-key", except on its first connection: there, GET "bad"
// is answered by fault, after which the connection answers nothing more (it stays silent until the pool
// closes it). A request for "bad" on a later connection is answered normally.
func outOfStepServer(t *testing.T, fault func(c *fakeredis.Conn)) *fakeredis.Server {
	var mu sync.Mutex
	poisoned := map[int]bool{}
	return fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		mu.Lock()
		p := poisoned[c.ID]
		if c.ID == 1 && string(args[1]) == "bad" {
			poisoned[c.ID] = true
		}
		mu.Unlock()
		switch {
		case p:
		case c.ID == 1 && string(args[1]) == "bad":
			fault(c)
		default:
			c.Bulk([]byte("v-" + string(args[1])))
		}
	})
}

// TestMalformedReply: a reply that is not RESP closes the connection. The requests written on it get what
// OnClose promises (idempotent: resent; otherwise the "lost" error), the one that got the bad reply
// included; a later request is served on a fresh connection; nobody gets another's reply.
func TestMalformedReply(t *testing.T) {
	faults := []struct {
		name  string
		reply string // "" closes the connection instead
	}{
		{"unknown type byte", "?garbage\r\n"},
		{"bulk without CRLF", "$3\r\nabcXY"},
		{"LF without CR", "+OK\n"},
		{"negative bulk length", "$-2\r\n"},
		{"non-numeric array count", "*x\r\n"},
		{"null map", "%-1\r\n"},
		{"bad element in an array", "*2\r\n:1\r\n?\r\n"},
		{"streamed RESP3 bulk", "$?\r\n;4\r\nabcd\r\n;0\r\n"},
		{"binary junk", "\x00\xff\xfe\r\n"},
		{"node closes the connection", ""},
	}
	for _, fc := range faults {
		for _, idem := range []bool{false, true} {
			name := fc.name + "/bad request not idempotent"
			if idem {
				name = fc.name + "/bad request idempotent"
			}
			t.Run(name, func(t *testing.T) {
				srv := outOfStepServer(t, func(c *fakeredis.Conn) {
					if fc.reply == "" {
						c.Close()
						return
					}
					c.Write([]byte(fc.reply))
				})
				h := newHarness(t, testConfig(), srv)
				first := newCall(0, "GET", "t1")
				bad := newCall(0, "GET", "bad")
				bad.Idempotent = idem
				read := newCall(0, "GET", "t3").idempotent()
				write := newCall(0, "GET", "t4")
				h.send(first, bad, read, write)

				first.expect(t, bulk("v-t1"))
				if idem {
					bad.expect(t, bulk("v-bad"))
				} else {
					bad.expect(t, lostErr(srv.Addr))
				}
				read.expect(t, bulk("v-t3"))
				write.expect(t, lostErr(srv.Addr))
				later := newCall(0, "GET", "t5")
				h.send(later)
				later.expect(t, bulk("v-t5"))
				if srv.Accepted() != 2 {
					t.Errorf("%d connections, want 2", srv.Accepted())
				}
			})
		}
	}
}

// TestReplyWithoutRequest: a reply the pool did not ask for closes the connection (the stream is out of
// step); requests that were not written yet are sent on the next connection, whatever their idempotence, and
// get their own replies.
func TestReplyWithoutRequest(t *testing.T) {
	t.Run("extra reply after the last answer", func(t *testing.T) {
		// The node answers "first" late and twice, in one write. "second" is queued behind "first" meanwhile
		// (reply-clocked batching), so when the extra reply comes nothing is in flight: it has no request.
		srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
			if c.ID == 1 && string(args[1]) == "first" {
				c.Sleep(100 * time.Millisecond)
				c.Write([]byte("$7\r\nv-first\r\n+EXTRA\r\n"))
				return
			}
			c.Bulk([]byte("v-" + string(args[1])))
		})
		h := newHarness(t, testConfig(), srv)
		h.warm(t, 0)
		first := newCall(0, "GET", "first")
		second := newCall(0, "GET", "second") // not idempotent: it is resent only because it was never written
		h.send(first)
		h.send(second)
		first.expect(t, bulk("v-first"))
		second.expect(t, bulk("v-second"))
		if srv.Accepted() != 2 {
			t.Errorf("%d connections, want 2", srv.Accepted())
		}
		for _, cmd := range srv.Log() {
			if cmd.Args[1] == "second" && cmd.Conn != 2 {
				t.Errorf("\"second\" reached the node on connection %d, want only on 2: %v", cmd.Conn, srv.Log())
			}
		}
	})

	for _, tc := range []struct{ name, push string }{
		{"simple string while idle", "+PUSH\r\n"},
		{"RESP3 push while idle", ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n"},
		{"error while idle", "-ERR late\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns := make(chan *fakeredis.Conn, 4)
			srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
				select {
				case conns <- c:
				default:
				}
				c.Bulk([]byte("v-" + string(args[1])))
			})
			h := newHarness(t, testConfig(), srv)
			first := newCall(0, "GET", "first")
			h.send(first)
			first.expect(t, bulk("v-first"))
			c := <-conns
			c.Write([]byte(tc.push))
			eventually(t, 2*time.Second, "the pool closes the connection", func() bool { return srv.Open() == 0 })
			second := newCall(0, "GET", "second")
			h.send(second)
			second.expect(t, bulk("v-second"))
			if srv.Accepted() != 2 {
				t.Errorf("%d connections, want 2", srv.Accepted())
			}
		})
	}
}

// TestAuthHandshake: AUTH (and READONLY when reads may go to replicas) is sent on connect, with passwords and
// user names containing RESP's own marker bytes, before any request.
func TestAuthHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, user, pass string
		readFrom         ReadPolicy
	}{
		{"password with stars", "", "pa*ss*word", ReadMaster},
		{"password of stars and dollars", "", "*$*\r\n$1", ReadMaster},
		{"user and password with stars", "us*er", "*", ReadMaster},
		{"password with stars and READONLY", "", "pa*ss*word", ReadReplica},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeredis.Start(t, nil)
			srv.RequirePass(tc.user, tc.pass)
			srv.Set("k", "v")
			cfg := testConfig()
			cfg.Username, cfg.Password, cfg.ReadFrom = tc.user, tc.pass, tc.readFrom
			h := newHarness(t, cfg, srv)
			c := newCall(0, "GET", "k")
			h.send(c)
			c.expect(t, bulk("v"))
			want := []string{"AUTH", "GET"}
			if tc.readFrom != ReadMaster {
				want = []string{"AUTH", "READONLY", "GET"}
			}
			var got []string
			for _, cmd := range srv.Log() {
				got = append(got, cmd.Name())
				if cmd.Name() == "AUTH" && cmd.Args[len(cmd.Args)-1] != tc.pass {
					t.Errorf("AUTH sent %q, want password %q", cmd.Args, tc.pass)
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("node received %v, want %v", got, want)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		srv := fakeredis.Start(t, nil)
		srv.RequirePass("", "right")
		cfg := testConfig()
		cfg.Password = "wrong"
		h := newHarness(t, cfg, srv)
		c := newCall(0, "GET", "k").timeout(200 * time.Millisecond)
		h.send(c)
		got, at := c.wait(t, 2*time.Second)
		if !resp.IsError(got) {
			t.Errorf("reply %q, want an error", got)
		}
		t.Logf("reply with a wrong password: %q", got)
		checkAtDeadline(t, c, at)
	})
}

// TestExpireWhileDialing: a request that passes its deadline while its connection is still being set up
// (here: the node is slow to answer AUTH) is answered with the timeout error and never sent, and the
// requests queued with it get their own replies, not their neighbour's.
func TestExpireWhileDialing(t *testing.T) {
	const authDelay = 300 * time.Millisecond
	for _, tc := range []struct {
		name          string
		ask           bool // the expiring request follows an ASK: an ASKING is queued before it
		before, after int  // requests with a 5 s deadline sent with it, before and after it
	}{
		{"expired alone, then two more", false, 0, 0},
		{"expired between two", false, 1, 1},
		{"expired after ASK, between two", true, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
				if strings.ToUpper(string(args[0])) == "AUTH" {
					c.Sleep(authDelay)
				}
				if strings.ToUpper(string(args[0])) == "GET" {
					c.Bulk([]byte("v-" + string(args[1])))
					return
				}
				fakeredis.Default(c, args)
			})
			srv.RequirePass("", "pw")
			cfg := testConfig()
			cfg.Password = "pw"
			h := newHarness(t, cfg, srv)

			var calls []*call
			for i := range tc.before {
				calls = append(calls, newCall(0, "GET", fmt.Sprint("before", i)))
			}
			exp := newCall(0, "GET", "expired").timeout(100 * time.Millisecond)
			if tc.ask {
				exp.ask = srv.Addr
			}
			calls = append(calls, exp)
			for i := range tc.after {
				calls = append(calls, newCall(0, "GET", fmt.Sprint("after", i)))
			}
			start := time.Now()
			h.send(calls...)
			got, at := exp.wait(t, 2*time.Second)
			if want := "-ERR proxy timeout: no connection to " + srv.Addr + " in time\r\n"; string(got) != want {
				t.Errorf("expired request: reply %q, want %q", got, want)
			}
			checkAtDeadline(t, exp, at)
			// Two more while the dial is still under way.
			if time.Since(start) >= authDelay {
				t.Fatalf("the deadline passed too late (%v) to queue more before the dial ends", time.Since(start))
			}
			more := []*call{newCall(0, "GET", "more0"), newCall(0, "GET", "more1")}
			h.send(more...)
			for _, c := range append(calls, more...) {
				if c != exp {
					c.expect(t, bulk("v-"+keyOf(c)))
				}
			}
			for _, cmd := range srv.Log() {
				if cmd.Name() == "ASKING" || (len(cmd.Args) > 1 && cmd.Args[1] == "expired") {
					t.Errorf("node received %q, which belongs to the expired request", cmd.Args)
				}
			}
			if srv.Accepted() != 1 {
				t.Errorf("%d connections, want 1", srv.Accepted())
			}
		})
	}
}

// TestExpireWhileRedialling: a request resent after its connection was lost, whose deadline passes while
// the new connection is set up, gets the error that made it resend, not a timeout that says the node took
// it and never answered (the failure a client sees for a node down until its deadline).
func TestExpireWhileRedialling(t *testing.T) {
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		switch strings.ToUpper(string(args[0])) {
		case "AUTH":
			if c.Server().Accepted() > 1 {
				c.Sleep(500 * time.Millisecond)
			}
		case "GET":
			c.Close()
			return
		}
		fakeredis.Default(c, args)
	})
	srv.RequirePass("", "pw")
	cfg := testConfig()
	cfg.Password = "pw"
	h := newHarness(t, cfg, srv)
	c := newCall(0, "GET", "k").idempotent().timeout(200 * time.Millisecond)
	h.send(c)
	got, at := c.wait(t, 2*time.Second)
	if want := "-CLUSTERDOWN The cluster is down: node " + srv.Addr + " is unreachable\r\n"; string(got) != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	checkAtDeadline(t, c, at)
	if n := h.pool.Stats.Retries[RetryUnreachable].Load(); n < 1 {
		t.Errorf("Stats.Retries unreachable = %d: the GET resent after the lost connection was not counted", n)
	}
	if n := srv.Accepted(); n != 2 {
		t.Errorf("%d connections, want 2 (the lost one, the redial)", n)
	}
}

// TestExpiredQueuedLargeRequest: the Sink contract says the pool keeps no reference to a request once its
// Sink is called, so the sink may recycle the request and its Raw. A large request (written from its own
// memory, see Conn.queue) that expires while queued behind a slow reply must therefore not be written from
// that memory afterwards. The sink here scribbles over Raw when the timeout error arrives; the node must see
// either the original request or nothing, never the scribble.
func TestExpiredQueuedLargeRequest(t *testing.T) {
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[1]) == "slow" {
			c.Sleep(300 * time.Millisecond)
		}
		fakeredis.Default(c, args)
	})
	h := newHarness(t, testConfig(), srv)
	h.warm(t, 0) // open, so that the SET below is queued behind "slow" rather than written with it at connect
	big := strings.Repeat("v", 100<<10)
	slow := newCall(0, "GET", "slow")
	h.send(slow)
	set := newCall(0, "SET", "big", big).timeout(100 * time.Millisecond)
	set.Sink = recycler{set}
	h.send(set) // queued: "slow" is in flight
	got, _ := set.wait(t, 2*time.Second)
	if !bytes.HasPrefix(got, []byte("-ERR")) {
		t.Errorf("expired SET: reply %q, want an -ERR", got)
	}
	slow.expect(t, []byte("$-1\r\n"))
	after := newCall(0, "GET", "after")
	h.send(after)
	after.expect(t, []byte("$-1\r\n"))
	if n := srv.ProtocolErrors(); n != 0 {
		t.Errorf("the node got %d malformed requests: the expired request's recycled bytes were written", n)
	}
	for _, cmd := range srv.Log() {
		if cmd.Name() == "SET" && (len(cmd.Args) != 3 || cmd.Args[2] != big) {
			t.Errorf("the node got a corrupted SET (%d args)", len(cmd.Args))
		}
	}
	if srv.Accepted() != 1 {
		t.Errorf("%d connections, want 1", srv.Accepted())
	}
}

// recycler is a Sink that reuses the request's Raw as soon as it has the reply, as the Sink contract allows.
type recycler struct{ c *call }

func (r recycler) Reply(req *Request, reply []byte) {
	r.c.Reply(req, reply)
	for i := range req.Raw {
		req.Raw[i] = 'X'
	}
}

// TestDeadlineMidReply: a request whose deadline passes while its large reply is still arriving fails alone;
// the connection is not closed (bytes keep coming), the requests written behind it get their own replies, and
// the late reply is matched and dropped.
func TestDeadlineMidReply(t *testing.T) {
	big := strings.Repeat("r", 4<<20)
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		if string(args[1]) == "big" {
			// 4 MiB in 64 KiB pieces 10 ms apart: about 650 ms, well past the 200 ms deadline.
			c.WriteChunks(resp.AppendBulkString(nil, big), func() int { return 64 << 10 }, 10*time.Millisecond)
			return
		}
		fakeredis.Default(c, args)
	})
	srv.Set("after1", "a1")
	srv.Set("after2", "a2")
	h := newHarness(t, testConfig(), srv)
	h.warm(t, 0)
	slow := newCall(0, "GET", "big").timeout(200 * time.Millisecond)
	a1 := newCall(0, "GET", "after1")
	a2 := newCall(0, "GET", "after2")
	h.send(slow, a1, a2)
	got, at := slow.wait(t, 2*time.Second)
	if !bytes.HasPrefix(got, []byte("-ERR proxy timeout")) {
		t.Errorf("the request past its deadline mid-reply: %q", show(got))
	}
	checkAtDeadline(t, slow, at)
	a1.expect(t, bulk("a1"))
	a2.expect(t, bulk("a2"))
	if n := slow.count(); n != 1 {
		t.Errorf("the timed-out request got %d replies, want 1", n)
	}
	if srv.Accepted() != 1 {
		t.Errorf("%d connections, want 1: a slow reply must not close the connection", srv.Accepted())
	}
}

// TestResp3Connections: a pool with Protocol 3 sends HELLO 3 on connect, after AUTH, and reads its map reply
// whole; a push message (>) that a RESP3 node sends between replies is never taken for the answer to the
// request in flight, and the connection stays open.
func TestResp3Connections(t *testing.T) {
	hello := "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n" +
		"$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
	push := ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n"
	srv := fakeredis.Start(t, func(c *fakeredis.Conn, args [][]byte) {
		switch strings.ToUpper(string(args[0])) {
		case "HELLO":
			c.Write([]byte(hello))
		case "GET":
			c.Write([]byte(push))
			c.Write(append([]byte(push), resp.AppendBulk(nil, []byte("v-"+string(args[1])))...))
		default:
			fakeredis.Default(c, args)
		}
	})
	srv.RequirePass("", "pw")
	cfg := testConfig()
	cfg.Password, cfg.Protocol = "pw", 3
	h := newHarness(t, cfg, srv)
	for _, k := range []string{"a", "b", "c"} {
		c := newCall(0, "GET", k)
		h.send(c)
		c.expect(t, bulk("v-"+k))
	}
	if srv.Accepted() != 1 {
		t.Errorf("%d connections, want 1: a push must not put the connection out of step", srv.Accepted())
	}
	var got []string
	for _, cmd := range srv.Log() {
		got = append(got, cmd.Name())
	}
	if want := "AUTH HELLO GET GET GET"; strings.Join(got, " ") != want {
		t.Errorf("node received %v, want %s", got, want)
	}
}
