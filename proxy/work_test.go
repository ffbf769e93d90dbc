package proxy_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
)

// TestSessionsRest: a client with nothing under way holds no parser, queue or buffers (they go back to its
// loop, trimmed), whatever it did before; one with something under way keeps them, and gets its replies.
func TestSessionsRest(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 1})
	addr, srv := startProxyOpt(t, cl.Addrs(), false)
	const keepOut, keepSlots, keepBytes = 64 << 10, 1 << 10, 4 << 20 // workKeepOut, workKeepSlots, workKeepBytes
	atRest := func(what string, busy ...int64) {
		t.Helper()
		redistest.WaitFor(t, 5*time.Second, what, func() error {
			k := proxy.SessionWork(srv)
			slices.Sort(k.Busy)
			slices.Sort(busy)
			if !slices.Equal(k.Busy, busy) {
				return fmt.Errorf("%s: clients holding their work %v, want %v", what, k.Busy, busy)
			}
			if k.MaxOut > keepOut || k.MaxQueue > keepSlots || k.MaxBytes > keepBytes {
				t.Fatalf("%s: a kept work holds a reply buffer of %d bytes, a queue of %d slots; a loop keeps %d "+
					"bytes", what, k.MaxOut, k.MaxQueue, k.MaxBytes)
			}
			return nil
		})
	}
	idOf := func(c *rawConn) int64 {
		t.Helper()
		id, ok := resp.ParseInt(c.do("CLIENT", "ID"))
		if !ok {
			t.Fatal("CLIENT ID")
		}
		return id
	}
	c := dialRaw(t, addr)
	atRest("connected, nothing sent")

	// Replies around the kept buffer's size (from 64 KiB a reply is written from where it lies, not gathered).
	for _, total := range []int{keepOut - 1, keepOut, keepOut + 1, 200 << 10} {
		value := bulkOfSize(total)
		if got := c.do("SET", "rest:v", value); string(got) != "+OK\r\n" {
			t.Fatalf("SET: %q", got)
		}
		got := c.do("GET", "rest:v")
		if len(got) != total || !bytes.HasSuffix(got, []byte(value+"\r\n")) {
			t.Fatalf("GET of a reply of %d bytes: %d bytes", total, len(got))
		}
		atRest(fmt.Sprintf("after a reply of %d bytes", total))
	}

	// Two replies gathered in one write, more than the kept buffer together (both wait at the paused node, so
	// they come back in one read).
	w40 := bulkOfSize(40 << 10)
	if got := c.do("SET", "rest:w", w40); string(got) != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := dialRaw(t, cl.Addrs()[0]).do("CLIENT", "PAUSE", "200"); string(got) != "+OK\r\n" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	c.send(append(resp.AppendCommandStrings(nil, "GET", "rest:w"), resp.AppendCommandStrings(nil, "GET", "rest:w")...))
	for range 2 {
		if got := c.reply(); len(got) != 40<<10 {
			t.Fatalf("GET: %d bytes", len(got))
		}
	}
	atRest("after two replies of 40 KiB in one write")

	// A pipeline deeper than the kept queue, held at the node so that all of it waits in the queue (on a
	// client of small replies: the proxy lets it have more requests in flight), and a command of more
	// arguments than the kept parser's.
	pc := dialRaw(t, addr)
	pipeline := func(n int) {
		var pipe []byte
		for i := range n {
			pipe = resp.AppendCommandStrings(pipe, "GET", fmt.Sprint("rest:", i))
		}
		pc.send(pipe)
		for range n {
			if got := pc.reply(); string(got) != "$-1\r\n" {
				t.Fatalf("pipelined GET: %q", got)
			}
		}
	}
	pipeline(200)
	if got := dialRaw(t, cl.Addrs()[0]).do("CLIENT", "PAUSE", "300"); string(got) != "+OK\r\n" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	pipeline(keepSlots + 1)
	atRest("after a pipeline of 1,025")
	mset := []string{"MSET"}
	for i := range keepSlots + 1 {
		mset = append(mset, fmt.Sprint("rest:{k}", i), "x")
	}
	if got := c.do(mset...); string(got) != "+OK\r\n" {
		t.Fatalf("MSET: %q", got)
	}
	if got := c.do(append([]string{"DEL"}, mset[1:]...)...); !bytes.Equal(got, resp.AppendInt(nil, keepSlots+1)) {
		t.Fatalf("DEL: %q", got)
	}
	atRest("after 1,025 keys in one command")

	// A request that arrives in two parts, split at every byte: between them the session keeps its work
	// (and CLIENT LIST counts the bytes it holds); after them it rests.
	set := resp.AppendCommandStrings(nil, "SET", "rest:split", "value")
	id := idOf(c)
	other := dialRaw(t, addr)
	atRest("before the split requests")
	for cut := 1; cut < len(set); cut++ {
		c.send(set[:cut])
		atRest(fmt.Sprintf("after %d of %d bytes", cut, len(set)), id)
		list := string(other.do("CLIENT", "LIST", "ID", fmt.Sprint(id)))
		if !strings.Contains(list, fmt.Sprintf(" qbuf=%d ", cut)) {
			t.Fatalf("CLIENT LIST after %d bytes of a request: %s", cut, list)
		}
		c.send(set[cut:])
		if got := c.reply(); string(got) != "+OK\r\n" {
			t.Fatalf("SET split after byte %d: %q", cut, got)
		}
		atRest(fmt.Sprintf("after the request split at %d", cut))
	}
	if list := string(other.do("CLIENT", "LIST", "ID", fmt.Sprint(id))); !strings.Contains(list, " qbuf=0 ") ||
		!strings.Contains(list, " obl=0 oll=0 ") || !strings.Contains(list, " cmd=set ") {
		t.Fatalf("CLIENT LIST of a client at rest: %s", list)
	}

	// What answers later on its own keeps its work: a subscriber, an open transaction. Both still work.
	sub, tx := dialRaw(t, addr), dialRaw(t, addr)
	subID, txID := idOf(sub), idOf(tx)
	if got := sub.do("SUBSCRIBE", "rest:ch"); !bytes.Contains(got, []byte("rest:ch")) {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	if got := tx.do("MULTI"); string(got) != "+OK\r\n" {
		t.Fatalf("MULTI: %q", got)
	}
	tx.do("INCR", "rest:n")
	atRest("with a subscriber and a transaction open", subID, txID)
	if got := c.do("PUBLISH", "rest:ch", "hello"); string(got) != ":1\r\n" {
		t.Fatalf("PUBLISH: %q", got)
	}
	if got := sub.reply(); !bytes.Contains(got, []byte("hello")) {
		t.Fatalf("message: %q", got)
	}
	if got := tx.do("EXEC"); string(got) != "*1\r\n:1\r\n" {
		t.Fatalf("EXEC: %q", got)
	}
	atRest("after EXEC", subID)

	// Many clients at once, each with a reply gathered in a buffer of 64 KiB: each rests after its reply, and
	// the loops keep a bounded number of works and bytes.
	if got := c.do("SET", "rest:v", bulkOfSize(keepOut-1)); string(got) != "+OK\r\n" {
		t.Fatalf("SET: %q", got)
	}
	if got := dialRaw(t, cl.Addrs()[0]).do("CLIENT", "PAUSE", "500"); string(got) != "+OK\r\n" {
		t.Fatalf("CLIENT PAUSE: %q", got) // so that all of them wait at once
	}
	var many []*rawConn
	for range 300 {
		m := dialRaw(t, addr)
		m.send(resp.AppendCommandStrings(nil, "GET", "rest:v"))
		many = append(many, m)
	}
	for _, m := range many {
		if got := m.reply(); !bytes.HasPrefix(got, []byte("$")) {
			t.Fatalf("GET: %q", got)
		}
	}
	atRest("after 300 clients", subID)
	for _, n := range proxy.SessionWork(srv).Free {
		if n > 1024 {
			t.Errorf("a loop keeps %d works", n)
		}
	}
}

// bulkOfSize is a value whose GET reply ("$<len>\r\n<value>\r\n") is total bytes long.
func bulkOfSize(total int) string {
	for digits := 1; ; digits++ {
		if n := total - digits - 5; len(strconv.Itoa(n)) == digits {
			return strings.Repeat("v", n)
		}
	}
}
