package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotproxy/slotproxy/resp"
)

// TestLargeValueRepro is the report that opened the large-value work: a 100 KB SET through the proxy, then a
// 200 KB value written on the node directly and read through the proxy. Both used to hang, and the shared
// backend connection with them.
func TestLargeValueRepro(t *testing.T) {
	addr, _, cl := shared(t)
	ctx := context.Background()
	c := newClient(addr)
	defer c.Close()
	c.Options().ReadTimeout = 5 * time.Second

	v100 := strings.Repeat("a", 100_000)
	if err := c.Set(ctx, "lv:100k", v100, 0).Err(); err != nil {
		t.Fatalf("SET of 100 KB: %v", err)
	}
	got, err := c.Get(ctx, "lv:100k").Result()
	if err != nil || got != v100 {
		t.Fatalf("GET of 100 KB: %d bytes, %v", len(got), err)
	}

	v200 := strings.Repeat("b", 200_000)
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer direct.Close()
	if err := direct.Set(ctx, "lv:200k", v200, 0).Err(); err != nil {
		t.Fatal(err)
	}
	got, err = c.Get(ctx, "lv:200k").Result()
	if err != nil || !bytes.Equal([]byte(got), []byte(v200)) {
		t.Fatalf("GET of 200 KB written on the node: %d bytes, %v", len(got), err)
	}
}

// bulkConn reads replies of any size quickly (rawConn reads byte by byte).
type bulkConn struct {
	t   testing.TB
	c   net.Conn
	buf []byte // bytes read and not yet returned
	sc  resp.ReplyScanner
}

func dialBulk(t testing.TB, addr string) *bulkConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &bulkConn{t: t, c: c}
}

func (b *bulkConn) send(p []byte) error {
	_ = b.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	_, err := b.c.Write(p)
	return err
}

// reply returns the next whole reply.
func (b *bulkConn) reply(timeout time.Duration) ([]byte, error) {
	_ = b.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		if len(b.buf) > 0 && len(b.buf) >= b.sc.Need() {
			n, err := b.sc.Scan(b.buf)
			if err != nil {
				return nil, fmt.Errorf("bad reply %.200q: %v", b.buf, err)
			}
			if n > 0 {
				r := b.buf[:n:n]
				b.buf = append([]byte(nil), b.buf[n:]...)
				return r, nil
			}
		}
		want := max(b.sc.Need(), len(b.buf)+1)
		if cap(b.buf) < want {
			nb := make([]byte, len(b.buf), max(want, 64<<10))
			copy(nb, b.buf)
			b.buf = nb
		}
		n, err := b.c.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if err != nil {
			return nil, fmt.Errorf("read after %d bytes: %w", len(b.buf), err)
		}
	}
}

// patterned is a value of n bytes that is not uniform (CR and LF included), so a reply cut or shifted
// anywhere does not compare equal.
func patterned(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = "0123456789abcdef\r\nXYZ"[(i*7+i/251)%21]
	}
	return v
}

// sizeScript is the command sequence of the size matrix for one value: every command whose request or reply
// carries the value, the fan-out ones (MSET, MGET) over keys in three slots.
func sizeScript(p string, v []byte) [][][]byte {
	b := func(args ...any) [][]byte {
		out := make([][]byte, len(args))
		for i, a := range args {
			switch a := a.(type) {
			case string:
				out[i] = []byte(a)
			case []byte:
				out[i] = a
			}
		}
		return out
	}
	half := fmt.Sprint(len(v) / 2)
	k, a, h, l := p+"k", p+"a", p+"h", p+"l"
	return [][][]byte{
		b("DEL", k, a, h, l, p+"m1", p+"m2", p+"m3"),
		b("SET", k, v),
		b("GET", k),
		b("STRLEN", k),
		b("APPEND", a, v),
		b("APPEND", a, v),
		b("GET", a),
		b("GETRANGE", k, "0", "-1"),
		b("GETRANGE", k, half, "-1"),
		b("MSET", p+"m1", v, p+"m2", v, p+"m3", v),
		b("MGET", p+"m1", p+"nokey", p+"m2", p+"m3"),
		b("HSET", h, "f1", v, "f2", v),
		b("HGETALL", h),
		b("RPUSH", l, v, v),
		b("LRANGE", l, "0", "-1"),
		b("EVAL", "return ARGV[1]", "0", v),
		b("EVAL", "return redis.call('GET', KEYS[1])", "1", k),
		b("DEL", k, a, h, l, p+"m1", p+"m2", p+"m3"),
	}
}

// sendCommand writes one request without copying its arguments into one buffer (a 100 MiB value is written
// from where it lies).
func (b *bulkConn) sendCommand(args [][]byte) error {
	bufs := net.Buffers{resp.AppendArrayHeader(nil, len(args))}
	for _, a := range args {
		bufs = append(bufs, fmt.Appendf(nil, "$%d\r\n", len(a)), a, []byte("\r\n"))
	}
	_ = b.c.SetWriteDeadline(time.Now().Add(120 * time.Second))
	_, err := bufs.WriteTo(b.c)
	return err
}

// digest stands for a reply in comparisons, so the test holds no copy of large replies: length, hash and the
// first bytes. HGETALL's pairs are sorted first: a hash of large values is a hash table whose order depends on
// the server's random seed.
func digest(cmd string, reply []byte) string {
	if cmd == "HGETALL" {
		reply = sortedPairs(reply)
	}
	return fmt.Sprintf("%d bytes %x %.60q", len(reply), sha256.Sum256(reply), reply)
}

// runScript sends the script one command at a time, or all of it without waiting (pipelined), and returns
// the replies' digests.
func runScript(c *bulkConn, script [][][]byte, pipelined bool, timeout time.Duration) ([]string, error) {
	replies := make([]string, 0, len(script))
	if pipelined {
		errc := make(chan error, 1)
		go func() { // replies must be read while the requests are still going out
			for _, cmd := range script {
				if err := c.sendCommand(cmd); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for _, cmd := range script {
			r, err := c.reply(timeout)
			if err != nil {
				return replies, err
			}
			replies = append(replies, digest(string(cmd[0]), r))
		}
		return replies, <-errc
	}
	for _, cmd := range script {
		if err := c.sendCommand(cmd); err != nil {
			return replies, err
		}
		r, err := c.reply(timeout)
		if err != nil {
			return replies, err
		}
		replies = append(replies, digest(string(cmd[0]), r))
	}
	return replies, nil
}

// TestSizeMatrix sends values of every size around the buffer boundaries (16 KiB, gnet's 64 KiB write ring,
// the proxy's 1 MiB read buffer) and up to 100 MiB, in requests and in replies, single and pipelined, from
// several clients at once, and wants every reply byte-equal to a standalone Redis's.
func TestSizeMatrix(t *testing.T) {
	addr, standalone, cl := shared(t)
	sizes := []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1<<20 - 1, 1 << 20, 1<<20 + 1,
		16 << 20, 100 << 20}
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			v := patterned(size)
			clients, timeout := 4, 20*time.Second
			if size >= 100<<20 {
				clients, timeout = 2, 120*time.Second
			}
			ref := dialBulk(t, standalone.Addr)
			want, err := runScript(ref, sizeScript(fmt.Sprintf("sm%d:", size), v), false, timeout)
			if err != nil {
				t.Fatal("standalone:", err)
			}
			ref.c.Close()
			var wg sync.WaitGroup
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					c := dialBulk(t, addr)
					modes := []bool{false, true}
					if size >= 100<<20 {
						modes = modes[i%2 : i%2+1] // one client each way: the test's own copies add up
					}
					for _, pipelined := range modes {
						script := sizeScript(fmt.Sprintf("sm%d:%d:%v:", size, i, pipelined), v)
						got, err := runScript(c, script, pipelined, timeout)
						if err != nil {
							// Where it stands, for a hang: the proxy's clients (the first address), and the nodes' view of it.
							for _, a := range append([]string{addr}, cl.Addrs()...) {
								list, _, err := rawDo(a, 2*time.Second, "CLIENT", "LIST")
								t.Logf("CLIENT LIST of %s (%v):\n%s", a, err, list)
							}
							t.Errorf("client %d pipelined=%v: %v after %d replies", i, pipelined, err, len(got))
							return
						}
						for j := range want {
							if got[j] != want[j] {
								t.Errorf("client %d pipelined=%v %s:\n proxy %s\n redis %s",
									i, pipelined, script[j][0], got[j], want[j])
							}
						}
					}
				}(i)
			}
			wg.Wait()
			runtime.GC()
			debug.FreeOSMemory()
			if t.Failed() {
				for _, n := range cl.Nodes {
					t.Logf("%s:\n%s", n.Addr, n.LogTail(15))
				}
			}
		})
	}
}

// sortedPairs re-encodes an array reply of field-value pairs with the pairs sorted.
func sortedPairs(reply []byte) []byte {
	elems, ok := resp.ArrayElems(reply, nil)
	if !ok || len(elems)%2 != 0 {
		return reply
	}
	pairs := make([]string, 0, len(elems)/2)
	for i := 0; i < len(elems); i += 2 {
		pairs = append(pairs, string(elems[i])+string(elems[i+1]))
	}
	sort.Strings(pairs)
	out := resp.AppendArrayHeader(nil, len(elems))
	for _, p := range pairs {
		out = append(out, p...)
	}
	return out
}
