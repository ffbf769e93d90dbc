package command_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/proxy/command/internal/liveredis"
)

// clusterCases are requests for TestClusterKeyIndexesMatchServer, split on spaces; an argument starting with
// '%' is a free name (the test replaces it), the others are sent as they are.
const clusterCases = `
GET %k
MSET %a 1 %b 2
MGET %a %b %c
ZUNIONSTORE %d 2 %a %b
ZINTERSTORE %d 1 %a WEIGHTS 2
ZDIFFSTORE %d 2 %a %b
EVAL s 2 %a %b %c
EVAL s 02 %a %b
FCALL f 1 %a %b
XREAD COUNT 2 STREAMS %a %b 0 0
XREAD STREAMS %a %b 0
XREADGROUP GROUP streams %c STREAMS %s >
XREADGROUP GROUP %g streams STREAMS %s >
XREAD COUNT streams STREAMS %a 0
MIGRATE h 6379 %k 0 5000 KEYS
XREADGROUP GROUP %g %c COUNT 1 NOACK STREAMS %s %t > >
GEORADIUS %k 0 0 1 km STORE %d STOREDIST %e
GEORADIUS %k 0 0 1 km STOREDIST %d STORE %e
GEORADIUS %k 0 0 1 km STORE STORE %d
GEORADIUSBYMEMBER %k %m 1 km STORE %d
SORT %k BY %x STORE %d
SORT %k STORE %d STORE %e
SORT_RO %k BY %x
MIGRATE h 6379 %k 0 5000
MIGRATE h 6379 '' 0 5000 KEYS %a %b
MIGRATE h 6379 %k 0 5000 KEYS %a %b
LMPOP 2 %a %b LEFT
BLMPOP 0 2 %a %b LEFT
SINTERCARD 2 %a %b
SPUBLISH %c m
SSUBSCRIBE %c %d
SUNSUBSCRIBE %c %d
OBJECT ENCODING %k
XINFO STREAM %k
MEMORY USAGE %k
BITOP AND %d %a %b
LCS %a %b
COPY %a %b
SMOVE %a %b m
SET %k v GET
BITFIELD %k GET u8 0
`

// TestClusterKeyIndexesMatchServer checks ClusterKeyIndexes against a cluster-enabled redis-server that
// serves every slot but one. Each request is sent (inside MULTI, so that nothing runs, then DISCARD) once
// with every free name in a served slot and once more for every free name moved to the unserved slot;
// the server's answers (QUEUED, CROSSSLOT, or CLUSTERDOWN when the first key's slot is not served) must be
// the ones predicted from ClusterKeyIndexes's positions, in their order. On a server of another version than
// the table's, requests to commands it does not have are left out.
func TestClusterKeyIndexesMatchServer(t *testing.T) {
	srv := startServer(t, "--cluster-enabled", "yes", "--cluster-require-full-coverage", "no",
		"--cluster-node-timeout", "5000")
	c := srv.Conn

	const served, unserved = "a", "b" // hash tags
	if slot(unserved) == slot(served) {
		t.Fatal("the tags share a slot")
	}
	for _, cmd := range [][]string{
		{"CLUSTER", "ADDSLOTSRANGE", "0", "16383"},
		{"CLUSTER", "DELSLOTS", fmt.Sprint(slot(unserved))},
	} {
		if _, err := c.Do(cmd...); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := c.Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(v.(string), "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster state not ok: %s", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct{ key, want string }{{"{" + served + "}x", "QUEUED"}, {"{" + unserved + "}x", "CLUSTERDOWN"}} {
		if got := firstWord(sendInMulti(t, c, [][][]byte{bs("GET", tc.key)})[0]); got != tc.want {
			t.Fatalf("GET %s: %s, want %s: the test's CRC16 or set-up is wrong", tc.key, got, tc.want)
		}
	}

	reqs := []request{}
	for line := range strings.SplitSeq(strings.TrimSpace(clusterCases), "\n") {
		var r request
		for i, a := range strings.Fields(line) {
			switch {
			case a == "''":
				a = ""
			case strings.HasPrefix(a, "%"):
				r.free = append(r.free, i)
			}
			r.args = append(r.args, []byte(a))
		}
		reqs = append(reqs, r)
	}
	n := 60
	if testing.Short() {
		n = 5
	}
	reqs = append(reqs, randomRequests(2, n)...)

	type variant struct {
		args [][]byte
		want string // QUEUED, CROSSSLOT or CLUSTERDOWN
		keys []int
	}
	var variants []variant
	skipped := map[string]bool{}
	for _, r := range reqs {
		cmd, st := command.Lookup(r.args)
		if st != command.LookupOK {
			t.Errorf("%q: Lookup: %v", r.args, st)
			continue
		}
		if !srv.pinned && !srv.has(cmd) {
			skipped[cmd.Name] = true
			continue
		}
		if cmd.Has(command.NoMulti) || cmd.Name == "watch" {
			continue // refused in MULTI
		}
		for moved := -1; moved < len(r.free); moved++ {
			args := slices.Clone(r.args)
			for i, p := range r.free {
				tag := served
				if i == moved {
					tag = unserved
				}
				args[p] = fmt.Appendf(nil, "k%d{%s}", p, tag)
			}
			keys := command.ClusterKeyIndexes(cmd, args, nil)
			variants = append(variants, variant{args, predict(args, keys, slot(unserved)), keys})
		}
	}

	const batch = 1000
	failures, checked := 0, 0
	refused := map[string]string{} // command name: an error reply
	for start := 0; start < len(variants); start += batch {
		vs := variants[start:min(start+batch, len(variants))]
		var cmds [][][]byte
		for _, v := range vs {
			cmds = append(cmds, v.args)
		}
		for i, reply := range sendInMulti(t, c, cmds) {
			got := firstWord(reply)
			switch got {
			case "QUEUED", "CROSSSLOT", "CLUSTERDOWN":
			default:
				if _, isErr := reply.(liveredis.Error); isErr && !srv.pinned {
					// Refused before the slot check for a reason of its version (Valkey 8.0 refuses
					// SUNSUBSCRIBE outside subscribed mode with NOSUB): nothing to compare.
					refused[strings.ToLower(string(vs[i].args[0]))] = fmt.Sprint(reply)
					continue
				}
				t.Errorf("%q: unexpected reply %v", vs[i].args, reply)
				continue
			}
			checked++
			if got != vs[i].want {
				t.Errorf("%q: ClusterKeyIndexes %v predicts %s, server %v", vs[i].args, vs[i].keys, vs[i].want, reply)
				if failures++; failures > 30 {
					t.Fatal("too many failures")
				}
			}
		}
	}
	t.Logf("%d variants of %d requests checked", checked, len(reqs))
	if len(skipped) > 0 {
		t.Logf("requests to %d commands of the table that %s does not have were not sent: %s",
			len(skipped), srv.version, strings.Join(slices.Sorted(maps.Keys(skipped)), " "))
	}
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		t.Logf("%s refuses %s in MULTI before routing (not compared): %s", srv.version, name, refused[name])
	}
}

// predict is getNodeByQuery's verdict for keys on a node that serves every slot but unserved.
func predict(args [][]byte, keys []int, unserved int) string {
	if len(keys) == 0 {
		return "QUEUED"
	}
	first := slot(string(args[keys[0]]))
	if first == unserved {
		return "CLUSTERDOWN"
	}
	for _, k := range keys[1:] {
		if slot(string(args[k])) != first {
			return "CROSSSLOT"
		}
	}
	return "QUEUED"
}

// sendInMulti sends the commands between MULTI and DISCARD and returns their replies.
func sendInMulti(t *testing.T, c *liveredis.Conn, cmds [][][]byte) []any {
	t.Helper()
	c.Send(bs("MULTI")...)
	for _, args := range cmds {
		c.Send(args...)
	}
	c.Send(bs("DISCARD")...)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var replies []any
	for i := range len(cmds) + 2 {
		v, err := c.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && i <= len(cmds) {
			replies = append(replies, v)
		} else if v != "OK" {
			t.Fatalf("MULTI or DISCARD: %v", v)
		}
	}
	return replies
}

func firstWord(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case liveredis.Error:
		s = string(v)
	default:
		return fmt.Sprint(v)
	}
	w, _, _ := strings.Cut(s, " ")
	return w
}

// slot is Redis Cluster's keyHashSlot: CRC16 (XMODEM) of the key, or of its first non-empty {hash tag},
// modulo 16384.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) & 16383
}
