package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/internal/redistest"
	"github.com/slotproxy/slotproxy/proxy"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// TestTransactionsMatchStandalone: MULTI ... EXEC / DISCARD through the proxy answers byte for byte what a
// standalone Redis answers: queued replies, errors at queue time and EXECABORT, errors at run time inside
// EXEC's reply, nested MULTI, EXEC and DISCARD without MULTI, commands refused in a transaction. Keys share a
// hash tag, as a transaction in a cluster must.
func TestTransactionsMatchStandalone(t *testing.T) {
	differential(t, split(`
		DEL {tx}k {tx}n {tx}l
		EXEC
		DISCARD
		MULTI
		SET {tx}k v
		INCR {tx}n
		INCR {tx}n
		GET {tx}k
		RPUSH {tx}l a b
		LRANGE {tx}l 0 -1
		PING
		ECHO hi
		EXEC
		MULTI
		EXEC
		MULTI
		SET {tx}k w
		INCR {tx}k
		GET {tx}k
		EXEC
		MULTI
		SET {tx}k x
		NOSUCHCOMMAND a
		EXEC
		GET {tx}k
		MULTI
		GET
		SET {tx}k y
		EXEC
		MULTI
		MULTI
		WATCH {tx}k
		SET {tx}k z
		EXEC
		MULTI
		SET {tx}k discarded
		DISCARD
		GET {tx}k
		EXEC
		MULTI
		CLIENT NOSUCH
		EXEC
		UNWATCH
	`))
}

// TestTransactionRefusals: where the proxy differs from Redis, named. SUBSCRIBE inside MULTI (Redis queues it
// and the connection is subscribed after EXEC) and the commands of the client's own connection (CLIENT
// SETNAME, HELLO, SELECT ...) are refused when queued, and EXEC aborts, as after any refused command.
func TestTransactionRefusals(t *testing.T) {
	addr, _, _ := shared(t)
	c := dialRaw(t, addr)
	for _, step := range []struct{ cmd, want string }{
		{"MULTI", "+OK\r\n"},
		{"SUBSCRIBE ch", "-ERR 'SUBSCRIBE' inside MULTI is not supported by the proxy\r\n"},
		{"CLIENT SETNAME x", "-ERR 'CLIENT SETNAME' inside MULTI is not supported by the proxy\r\n"},
		{"SELECT 0", "-ERR 'SELECT' inside MULTI is not supported by the proxy\r\n"},
		{"SET {txr}k v", "+QUEUED\r\n"},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"},
		{"EXISTS {txr}k", ":0\r\n"},
		{"MULTI", "+OK\r\n"},
		{"RESET", "+RESET\r\n"},
		{"EXEC", "-ERR EXEC without MULTI\r\n"},
	} {
		if got := string(c.do(splitOne(step.cmd)...)); got != step.want {
			t.Errorf("%s = %q, want %q", step.cmd, got, step.want)
		}
	}
}

// TestTransactionsPipelined: whole transactions in one write, and a reply of each command in order.
func TestTransactionsPipelined(t *testing.T) {
	addr, standalone, _ := shared(t)
	var req []byte
	for i := 0; i < 50; i++ {
		req = resp.AppendCommandStrings(req, "MULTI")
		req = resp.AppendCommandStrings(req, "INCR", "{txp}n")
		req = resp.AppendCommandStrings(req, "GET", "{txp}n")
		req = resp.AppendCommandStrings(req, "EXEC")
		req = resp.AppendCommandStrings(req, "GET", "{txp}n")
	}
	var out [2][]byte
	for i, a := range []string{standalone.Addr, addr} {
		c := dialRaw(t, a)
		c.do("DEL", "{txp}n")
		c.send(req)
		for j := 0; j < 250; j++ {
			out[i] = append(out[i], c.reply()...)
		}
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Errorf("pipelined transactions:\n proxy %q\n redis %q", out[1], out[0])
	}
}

// TestTransactionsCrossSlot: a transaction's keys must be in one slot, as in Redis Cluster: keys of several
// slots in one command are refused when queued (and EXEC aborts); in several commands EXEC answers CROSSSLOT
// and nothing runs.
func TestTransactionsCrossSlot(t *testing.T) {
	addr, _, _ := shared(t)
	c := dialRaw(t, addr)
	a, b := keyInRange("txc:", 0, 5460), keyInRange("txc:", 10923, 16383)
	for _, step := range []struct{ cmd, want string }{
		{"DEL " + a + " " + b, ""},
		{"MULTI", "+OK\r\n"},
		{"SET " + a + " 1", "+QUEUED\r\n"},
		{"SET " + b + " 2", "+QUEUED\r\n"},
		{"EXEC", "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{"EXISTS " + a + " " + b, ":0\r\n"},
		{"MULTI", "+OK\r\n"},
		{"MSET " + a + " 1 " + b + " 2", "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{"SET " + a + " 1", "+QUEUED\r\n"},
		{"EXEC", "-EXECABORT Transaction discarded because of previous errors.\r\n"},
		{"EXISTS " + a, ":0\r\n"},
	} {
		got := string(c.do(splitOne(step.cmd)...))
		if step.want != "" && got != step.want {
			t.Errorf("%s = %q, want %q", step.cmd, got, step.want)
		}
	}
	checkServes(t, c, "cross-slot transactions")
}

func splitOne(s string) []string { return split(s)[0] }

// TestTransactionsAtomic: 20 clients run MULTI INCR a INCR b EXEC at once: every EXEC's reply is [n, n] and
// the counters end equal to the number of EXECs, so no transaction interleaved with another.
func TestTransactionsAtomic(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	c.Del(ctx, "{txa}a", "{txa}b")
	const clients, rounds = 20, 100
	concurrently(t, addr, clients, func(cl *redis.Client) error {
		for j := 0; j < rounds; j++ {
			cmds, err := cl.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, "{txa}a")
				p.Incr(ctx, "{txa}b")
				return nil
			})
			if err != nil {
				return err
			}
			if x, y := cmds[0].(*redis.IntCmd).Val(), cmds[1].(*redis.IntCmd).Val(); x != y {
				return fmt.Errorf("EXEC answered [%d %d]: another transaction ran in between", x, y)
			}
		}
		return nil
	})
	for _, k := range []string{"{txa}a", "{txa}b"} {
		if n, _ := c.Get(ctx, k).Int(); n != clients*rounds {
			t.Errorf("%s = %d after %d transactions", k, n, clients*rounds)
		}
	}
}

// TestTransactionFollowsMovedSlot: with a stale map, the node refuses a transaction's commands with MOVED and
// EXEC aborts; nothing ran, so the proxy sends the transaction to the slot's new owner, and the client sees
// EXEC's reply from there. A client that WATCHed before the move gets the null array of a touched watch.
func TestTransactionFollowsMovedSlot(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.ClusterOptions{Masters: 3})
	addr, _ := startProxyOpt(t, cl.Addrs(), false, func(c *proxy.Config) {
		c.RefreshInterval = proxy.Duration(time.Hour)
	})
	ctx := context.Background()
	const key = "{txm}k"
	slot := int(topology.Slot([]byte(key)))
	var owner, target *redistest.Server
	for _, n := range cl.Masters() {
		if err := n.Client(t).Get(ctx, key).Err(); err == redis.Nil {
			owner = n
		} else if target == nil {
			target = n
		}
	}
	if owner == nil || target == nil {
		t.Fatal("cannot find the slot's owner")
	}
	px := dialRaw(t, addr)
	if got := string(px.do("SET", key, "before")); got != "+OK\r\n" { // opens the connections, learns the map
		t.Fatal(got)
	}
	if err := owner.Client(t).Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	watcher := dialRaw(t, addr) // watches on the owner before the slot moves
	if got := string(watcher.do("WATCH", "{txm}w")); got != "+OK\r\n" {
		t.Fatal(got)
	}
	targetID, err := target.Client(t).Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cl.Masters() { // an empty slot moves with SETSLOT alone
		if err := n.Client(t).Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", targetID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct{ cmd, want string }{
		{"MULTI", "+OK\r\n"},
		{"SET " + key + " after", "+QUEUED\r\n"},
		{"INCR {txm}n", "+QUEUED\r\n"},
		{"EXEC", "*2\r\n+OK\r\n:1\r\n"},
	} {
		if got := string(px.do(splitOne(step.cmd)...)); got != step.want {
			t.Errorf("%s = %q, want %q", step.cmd, got, step.want)
		}
	}
	if v, err := target.Client(t).Get(ctx, key).Result(); err != nil || v != "after" {
		t.Errorf("on the new owner %s = %q, %v", key, v, err)
	}
	if n, _ := owner.Client(t).Exists(ctx, "{txm}n").Result(); n != 0 {
		t.Error("the old owner ran part of the transaction")
	}
	// The watch stayed on the old owner: its EXEC is refused there, and the client hears a touched watch.
	for _, step := range []struct{ cmd, want string }{
		{"MULTI", "+OK\r\n"},
		{"SET {txm}w x", "+QUEUED\r\n"},
		{"EXEC", "*-1\r\n"},
		{"EXISTS {txm}w", ":0\r\n"},
	} {
		if got := string(watcher.do(splitOne(step.cmd)...)); got != step.want {
			t.Errorf("after WATCH: %s = %q, want %q", step.cmd, got, step.want)
		}
	}
}

// TestTransactionClientGone: clients that send transactions (some behind other requests, so that EXEC waits,
// some holding a WATCH) and leave at once leak no leased connection: afterwards each node has at most its shared connections plus
// the few released leases a loop keeps, and transactions still run.
func TestTransactionClientGone(t *testing.T) {
	_, _, cluster := shared(t)
	addr, srv := startProxyOpt(t, cluster.Addrs(), false)
	var tx []byte
	tx = resp.AppendCommandStrings(tx, "MULTI")
	tx = resp.AppendCommandStrings(tx, "INCR", "{txg}n")
	tx = resp.AppendCommandStrings(tx, "EXEC")
	behind := append(resp.AppendCommandStrings(nil, "GET", "{txg}n"), tx...)
	watch := resp.AppendCommandStrings(nil, "WATCH", "{txg}n")
	for i := 0; i < 300; i++ {
		c := dialRaw(t, addr)
		switch i % 3 {
		case 0:
			c.send(tx) // its EXEC is on a leased connection when the client leaves
		case 1:
			c.send(bytes.Repeat(behind, 2)) // its EXECs wait for the GETs before them
		default:
			if got := string(c.do("WATCH", "{txg}n")); got != "+OK\r\n" { // it leaves holding a WATCH
				t.Fatalf("WATCH = %q", got)
			}
			c.send(append(watch, tx...))
		}
		c.c.Close()
	}
	const loops, idleLeases = 2, 4
	eventually(t, 10*time.Second, "leased connections are given back", func() bool {
		for _, n := range srv.BackendConns() {
			if n > loops*(1+idleLeases) {
				return false
			}
		}
		return true
	})
	c := dialRaw(t, addr)
	c.do("MULTI")
	c.do("INCR", "{txg}n")
	if got := c.do("EXEC"); !bytes.HasPrefix(got, []byte("*1\r\n:")) {
		t.Errorf("EXEC after the clients left = %q", got)
	}
	checkServes(t, c, "clients gone mid-transaction")
}

// TestTransactionQueueLimit: the commands a transaction queues count against client_query_buffer_limit, as
// unparsed input does: past it the client is closed, and others go on.
func TestTransactionQueueLimit(t *testing.T) {
	_, _, cluster := shared(t)
	addr := startProxy(t, cluster.Addrs(), func(c *proxy.Config) { c.QueryLimit = 1 << 20 })
	c := dialRaw(t, addr)
	other := dialRaw(t, addr)
	c.do("MULTI")
	value := string(bytes.Repeat([]byte("v"), 256<<10))
	for i := 0; i < 3; i++ {
		if got := string(c.do("SET", "{txq}k", value)); got != "+QUEUED\r\n" {
			t.Fatalf("SET %d of 256 KiB = %q", i, got)
		}
	}
	c.send(resp.AppendCommandStrings(nil, "SET", "{txq}k", value))
	if !c.closed() {
		t.Error("a transaction of over 1 MiB queued with client_query_buffer_limit 1mb did not close the client")
	}
	checkServes(t, other, "a transaction over the limit")
}

// TestWatchMatchesStandalone: WATCH through the proxy against a second client's writes answers byte for byte
// what a standalone Redis answers: EXEC runs when nothing touched the watched keys, answers a null array when
// another client or the client itself wrote one, and UNWATCH, DISCARD, EXEC and RESET end the watch.
func TestWatchMatchesStandalone(t *testing.T) {
	addr, standalone, _ := shared(t)
	steps := []struct {
		other bool // sent by the second client
		cmd   string
	}{
		{false, "DEL {w}k {w}j {w}l"}, {false, "SET {w}k 1"},
		{false, "WATCH {w}k"}, {false, "GET {w}k"}, {false, "MULTI"}, {false, "INCR {w}k"}, {false, "EXEC"},
		{false, "WATCH {w}k"}, {true, "SET {w}k 10"}, {false, "MULTI"}, {false, "INCR {w}k"}, {false, "EXEC"},
		{false, "GET {w}k"},
		{false, "WATCH {w}k"}, {false, "UNWATCH"}, {true, "SET {w}k 20"}, {false, "MULTI"}, {false, "INCR {w}k"},
		{false, "EXEC"},
		{false, "WATCH {w}k"}, {false, "MULTI"}, {false, "DISCARD"}, {true, "SET {w}k 30"}, {false, "MULTI"},
		{false, "INCR {w}k"}, {false, "EXEC"},
		{false, "WATCH {w}k {w}j"}, {false, "WATCH {w}l"}, {true, "SET {w}l x"}, {false, "MULTI"},
		{false, "SET {w}k y"}, {false, "EXEC"}, {false, "GET {w}k"},
		{false, "WATCH {w}k"}, {false, "SET {w}k own"}, {false, "MULTI"}, {false, "GET {w}k"}, {false, "EXEC"},
		{false, "WATCH {w}k"}, {false, "RESET"}, {true, "SET {w}k 40"}, {false, "MULTI"}, {false, "INCR {w}k"},
		{false, "EXEC"},
		{false, "WATCH {w}nosuch"}, {true, "SET {w}nosuch 1"}, {false, "MULTI"}, {false, "PING"}, {false, "EXEC"},
		{false, "WATCH {w}k"}, {false, "MULTI"}, {false, "NOSUCH"}, {false, "EXEC"}, {true, "SET {w}k 50"},
		{false, "MULTI"}, {false, "INCR {w}k"}, {false, "EXEC"},
	}
	var out [2][]string
	for i, a := range []string{standalone.Addr, addr} {
		c1, c2 := dialRaw(t, a), dialRaw(t, a)
		for _, st := range steps {
			c := c1
			if st.other {
				c = c2
			}
			out[i] = append(out[i], string(c.do(splitOne(st.cmd)...)))
		}
	}
	for j, st := range steps {
		if out[0][j] != out[1][j] {
			t.Errorf("step %d %q: proxy %q, redis %q", j, st.cmd, out[1][j], out[0][j])
		}
	}
}

// TestWatchCrossSlot: watched keys and a transaction's keys must share one slot, as in Redis Cluster.
func TestWatchCrossSlot(t *testing.T) {
	addr, _, _ := shared(t)
	c := dialRaw(t, addr)
	a, b := keyInRange("wc:", 0, 5460), keyInRange("wc:", 10923, 16383)
	for _, step := range []struct{ cmd, want string }{
		{"WATCH " + a + " " + b, "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{"WATCH " + a, "+OK\r\n"},
		{"WATCH " + b, "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{"MULTI", "+OK\r\n"},
		{"SET " + b + " 1", "+QUEUED\r\n"},
		{"EXEC", "-CROSSSLOT Keys in request don't hash to the same slot\r\n"},
		{"EXISTS " + b, ":0\r\n"},
		{"WATCH " + b, "+OK\r\n"}, // the EXEC ended the first watch
		{"UNWATCH", "+OK\r\n"},
	} {
		if got := string(c.do(splitOne(step.cmd)...)); got != step.want {
			t.Errorf("%s = %q, want %q", step.cmd, got, step.want)
		}
	}
	checkServes(t, c, "WATCH across slots")
}

// TestWatchOptimisticLocking: 10 go-redis clients increment one counter with WATCH, GET, MULTI, SET, EXEC and
// retry when EXEC fails: the counter ends equal to the EXECs that succeeded, and each client got through.
func TestWatchOptimisticLocking(t *testing.T) {
	addr, _, _ := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	c.Set(ctx, "{wol}n", 0, 0)
	const clients, rounds = 10, 30
	var mu sync.Mutex
	succeeded, conflicts := 0, 0
	concurrently(t, addr, clients, func(cl *redis.Client) error {
		for done := 0; done < rounds; {
			err := cl.Watch(ctx, func(tx *redis.Tx) error {
				n, err := tx.Get(ctx, "{wol}n").Int()
				if err != nil {
					return err
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "{wol}n", n+1, 0)
					return nil
				})
				return err
			}, "{wol}n")
			if err != nil && err != redis.TxFailedErr {
				return err
			}
			mu.Lock()
			if err == nil {
				succeeded++
				done++
			} else {
				conflicts++
			}
			mu.Unlock()
		}
		return nil
	})
	n, err := c.Get(ctx, "{wol}n").Int()
	t.Logf("%d EXECs succeeded, %d failed on a touched watch", succeeded, conflicts)
	if err != nil || n != succeeded || succeeded != clients*rounds {
		t.Errorf("counter %d (%v) after %d successful EXECs, want %d", n, err, succeeded, clients*rounds)
	}
}

// concurrently runs f on n clients of addr at once and fails t with each error f returns.
func concurrently(t *testing.T, addr string, n int, f func(cl *redis.Client) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient(addr)
			defer cl.Close()
			if err := f(cl); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
