package proxy

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// mergeKind says how the replies of a split command's parts become one reply.
type mergeKind uint8

const (
	mergeNone   mergeKind = iota
	mergeMGET             // values back in key order
	mergeOK               // +OK when every part said so
	mergeSum              // integer replies added (DEL, EXISTS, DBSIZE...)
	mergeConcat           // arrays concatenated (KEYS)
	mergeFirst            // the first part's reply (SCRIPT LOAD gives the same SHA everywhere)
	mergeInfo             // INFO of a master, each master's keyspace (summed), the proxy's fields and section
	mergeScan             // one part: SCAN of one master, cursor rewritten
)

// fanOutKeys splits a multi-key command by slot, one part per slot, in key order within each part. step is 1
// for key lists and 2 for key-value pairs (MSET). All keys in one slot: forwarded whole.
func fanOutKeys(kind mergeKind, step int) handler {
	return func(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
		if (len(args)-1)%step != 0 {
			s.local(resp.AppendError(nil, command.ArityError(cmd)))
			return
		}
		first := topology.Slot(args[1])
		split := false
		for i := 1 + step; i < len(args); i += step {
			if topology.Slot(args[i]) != first {
				split = true
				break
			}
		}
		if !split {
			s.forwardSlot(cmd, args, raw, int(first), now)
			return
		}
		l := s.l
		p := l.newRequest(s)
		p.merge = kind
		for i := 1; i < len(args); i += step {
			slot := int(topology.Slot(args[i]))
			ch := p.child(slot)
			if ch == nil {
				ch = l.newRequest(s)
				ch.parent = p
				ch.be.Slot = slot
				p.children = append(p.children, ch)
				ch.pending = len(p.children) - 1 // the child's index, until it is sent
				switch {
				case len(p.children) == scanChildren+1:
					for _, c := range p.children {
						l.slotChild[c.be.Slot] = c
					}
				case len(p.children) > scanChildren+1:
					l.slotChild[slot] = ch
				}
			}
			ch.order = append(ch.order, uint32(i))
			if kind == mergeMGET {
				p.order = append(p.order, uint32(ch.pending))
			}
		}
		table := len(p.children) > scanChildren
		for _, ch := range p.children {
			if table {
				l.slotChild[ch.be.Slot] = nil
			}
			ch.pending = 0
			size := 16 + len(args[0])
			for _, i := range ch.order {
				size += 16 + len(args[i])
				if step == 2 {
					size += 16 + len(args[i+1])
				}
			}
			raw := ch.be.Raw[:0]
			if cap(raw) < size {
				raw = make([]byte, 0, size)
			}
			raw = resp.AppendArrayHeader(raw, 1+len(ch.order)*step)
			raw = resp.AppendBulk(raw, args[0])
			for _, i := range ch.order {
				raw = resp.AppendBulk(raw, args[i])
				if step == 2 {
					raw = resp.AppendBulk(raw, args[i+1])
				}
			}
			ch.be.Raw = raw
			s.prepare(ch, cmd, ch.be.Slot, now)
		}
		s.sendParent(p)
	}
}

// scanChildren is how many parts a split command looks through for a key's slot before it uses the loop's
// slot table: misses in that 128 KiB table were 61 % of the fan-out's time at MSET of 10 keys, and the scan
// halved the fan-out's share of the proxy's CPU there (5.2 to 2.5 %).
const scanChildren = 16

// child is p's part for slot while a command is split, or nil.
func (p *request) child(slot int) *request {
	if len(p.children) > scanChildren {
		return p.sess.l.slotChild[slot]
	}
	for _, c := range p.children {
		if c.be.Slot == slot {
			return c
		}
	}
	return nil
}

// fanOutMasters sends the command to every master (by one slot each master owns, so a failover in between
// still reaches the shard).
func fanOutMasters(kind mergeKind) handler {
	return func(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
		snap := s.l.pool.Snapshot()
		if snap == nil {
			s.local(errClusterDown)
			return
		}
		p := s.l.newRequest(s)
		p.merge = kind
		for _, slot := range s.l.shardSlots(snap) {
			ch := s.l.newRequest(s)
			ch.parent = p
			ch.be.Raw = appendRaw(ch.be.Raw, args, raw)
			s.prepare(ch, cmd, slot, now)
			p.children = append(p.children, ch)
		}
		s.sendParent(p)
	}
}

var errClusterDown = resp.AppendError(nil, "CLUSTERDOWN The cluster is down")

// sendParent queues the parent in order and sends its parts. Parts may answer synchronously, so pending is
// set first.
func (s *session) sendParent(p *request) {
	p.pending = len(p.children)
	s.work().queue.Push(p)
	for _, ch := range p.children {
		s.pool().Send(&ch.be)
	}
}

// merged builds the parent's reply from its parts' replies. The first error wins, as a single Redis would
// fail the whole command.
func (p *request) merged() []byte {
	for _, c := range p.children {
		if resp.IsError(c.reply) {
			return c.reply
		}
	}
	out := p.reply[:0]
	l := p.sess.l
	switch p.merge {
	case mergeSum:
		var sum int64
		for _, c := range p.children {
			v, ok := resp.ParseInt(c.reply)
			if !ok {
				return c.reply
			}
			sum += v
		}
		out = resp.AppendInt(out, sum)
	case mergeOK, mergeFirst:
		out = append(out, p.children[0].reply...)
	case mergeMGET:
		elems := l.elems[:0]
		starts := l.starts[:0]
		for _, c := range p.children {
			starts = append(starts, len(elems))
			var ok bool
			if elems, ok = resp.ArrayElems(c.reply, elems); !ok {
				return c.reply
			}
		}
		out = resp.AppendArrayHeader(out, len(p.order))
		for _, ci := range p.order {
			out = append(out, elems[starts[ci]]...)
			starts[ci]++
		}
		clear(elems)
		l.elems, l.starts = elems[:0], starts[:0]
	case mergeConcat:
		elems := l.elems[:0]
		for _, c := range p.children {
			var ok bool
			if elems, ok = resp.ArrayElems(c.reply, elems); !ok {
				return c.reply
			}
		}
		out = resp.AppendArrayHeader(out, len(elems))
		for _, e := range elems {
			out = append(out, e...)
		}
		clear(elems)
		l.elems = elems[:0]
	case mergeInfo:
		out = p.infoReply(out)
	case mergeScan:
		out = p.scanReply(out)
	}
	p.reply = out
	return out
}

// cmdScan iterates the masters one after another. The client's cursor holds the master's position (low 8
// bits) and that master's own cursor (the rest); the map's shard order is stable between refreshes.
func cmdScan(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		s.local(resp.AppendError(nil, "ERR invalid cursor"))
		return
	}
	snap := s.l.pool.Snapshot()
	if snap == nil {
		s.local(errClusterDown)
		return
	}
	slots := s.l.shardSlots(snap)
	shard := int(cursor & 0xff)
	if shard >= len(slots) {
		s.local(resp.AppendError(nil, "ERR invalid cursor"))
		return
	}
	p := s.l.newRequest(s)
	p.merge = mergeScan
	p.order = append(p.order, uint32(shard), uint32(len(slots)))
	ch := s.l.newRequest(s)
	ch.parent = p
	b := resp.AppendArrayHeader(ch.be.Raw[:0], len(args))
	b = resp.AppendBulk(b, args[0])
	b = resp.AppendBulk(b, strconv.AppendUint(nil, cursor>>8, 10))
	for _, a := range args[2:] {
		b = resp.AppendBulk(b, a)
	}
	ch.be.Raw = b
	s.prepare(ch, cmd, slots[shard], now)
	p.children = append(p.children, ch)
	s.sendParent(p)
}

func (p *request) scanReply(out []byte) []byte {
	c := p.children[0]
	var parts [2][]byte
	elems, ok := resp.ArrayElems(c.reply, parts[:0])
	if !ok || len(elems) != 2 {
		return append(out, c.reply...)
	}
	next, _, _ := resp.BulkValue(elems[0])
	nodeCursor, err := strconv.ParseUint(string(next), 10, 64)
	if err != nil {
		return append(out, c.reply...)
	}
	shard, shards := uint64(p.order[0]), uint64(p.order[1])
	var cursor uint64
	switch {
	case nodeCursor != 0:
		cursor = nodeCursor<<8 | shard
	case shard+1 < shards:
		cursor = shard + 1
	}
	out = resp.AppendArrayHeader(out, 2)
	out = resp.AppendBulk(out, strconv.AppendUint(nil, cursor, 10))
	return append(out, elems[1]...)
}

// cmdInfo forwards INFO to a master and adds the proxy's section. Clients must not conclude they talk to a
// cluster (some switch to cluster mode on cluster_enabled:1), so the cluster markers are rewritten, unless
// the cluster facade is on.
func cmdInfo(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	p := s.l.newRequest(s)
	p.merge = mergeInfo
	withProxy := len(args) == 1
	for _, a := range args[1:] {
		for _, sec := range []string{"proxy", "all", "everything", "default"} {
			withProxy = withProxy || bytes.EqualFold(a, []byte(sec))
		}
	}
	if withProxy {
		p.order = append(p.order, 1)
	}
	ch := s.l.newRequest(s)
	ch.parent = p
	ch.be.Raw = appendRaw(ch.be.Raw, args, raw)
	s.prepare(ch, cmd, s.l.randomSlot(), now)
	p.children = append(p.children, ch)
	// The keyspace and the data's counters are the whole cluster's: every master's, summed (infoReply).
	var sections []string
	for _, sec := range []string{"keyspace", "stats"} {
		if infoHasSection(args, sec) {
			sections = append(sections, sec)
		}
	}
	if snap := s.l.pool.Snapshot(); snap != nil && len(sections) > 0 {
		for _, slot := range s.l.shardSlots(snap) {
			k := s.l.newRequest(s)
			k.parent = p
			k.be.Raw = resp.AppendArrayHeader(k.be.Raw[:0], 1+len(sections))
			k.be.Raw = resp.AppendBulkString(k.be.Raw, "INFO")
			for _, sec := range sections {
				k.be.Raw = resp.AppendBulkString(k.be.Raw, sec)
			}
			s.prepare(k, cmd, slot, now)
			p.children = append(p.children, k)
		}
	}
	s.sendParent(p)
}

// infoHasSection tells whether INFO with these arguments shows the section: named, or in default, all and
// everything (both sections here are in all three).
func infoHasSection(args [][]byte, section string) bool {
	if len(args) == 1 {
		return true
	}
	for _, a := range args[1:] {
		for _, sec := range []string{section, "all", "everything", "default"} {
			if bytes.EqualFold(a, []byte(sec)) {
				return true
			}
		}
	}
	return false
}

// clusterCounters are the INFO stats fields that count what the data did; through the proxy they are every
// master's, summed.
var clusterCounters = []string{"expired_keys", "evicted_keys", "keyspace_hits", "keyspace_misses"}

// sumCounters adds up the clusterCounters of the masters' INFO replies.
func sumCounters(replies [][]byte) map[string]string {
	sums := make(map[string]int64, len(clusterCounters))
	found := false
	for _, r := range replies {
		text, ok := infoText(r)
		if !ok {
			continue
		}
		for _, name := range clusterCounters {
			if v, ok := infoValue(text, name); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				sums[name] += n
				found = true
			}
		}
	}
	out := map[string]string{}
	if found {
		for name, n := range sums {
			out[name] = strconv.FormatInt(n, 10)
		}
	}
	return out
}

// infoText is the text of a node's INFO reply: a bulk string, or in RESP3 a verbatim one.
func infoText(reply []byte) ([]byte, bool) {
	if len(reply) > 0 && reply[0] == '=' {
		_, text, ok := resp.VerbatimValue(reply)
		return text, ok
	}
	text, isNull, ok := resp.BulkValue(reply)
	return text, ok && !isNull
}

// infoValue is the value of field name in an INFO text.
func infoValue(text []byte, name string) (string, bool) {
	for line := range bytes.Lines(text) {
		if v, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}

// sumKeyspace adds up the masters' "dbN:keys=K,expires=E,avg_ttl=T" lines (avg_ttl weighted by expires)
// into one section body.
func sumKeyspace(replies [][]byte) []byte {
	type db struct{ keys, expires, ttlSum int64 }
	dbs := map[string]*db{}
	var order []string
	for _, r := range replies {
		text, ok := infoText(r)
		if !ok {
			continue
		}
		for _, line := range bytes.Split(text, []byte("\r\n")) {
			name, fields, found := bytes.Cut(line, []byte(":"))
			if !found || !bytes.HasPrefix(name, []byte("db")) {
				continue
			}
			d := dbs[string(name)]
			if d == nil {
				d = &db{}
				dbs[string(name)] = d
				order = append(order, string(name))
			}
			var keys, expires, ttl int64
			for _, f := range bytes.Split(fields, []byte(",")) {
				k, v, _ := bytes.Cut(f, []byte("="))
				n, _ := strconv.ParseInt(string(v), 10, 64)
				switch string(k) {
				case "keys":
					keys = n
				case "expires":
					expires = n
				case "avg_ttl":
					ttl = n
				}
			}
			d.keys += keys
			d.expires += expires
			d.ttlSum += ttl * expires
		}
	}
	slices.Sort(order)
	b := []byte("# Keyspace\r\n")
	for _, name := range order {
		d := dbs[name]
		avg := int64(0)
		if d.expires > 0 {
			avg = d.ttlSum / d.expires
		}
		b = fmt.Appendf(b, "%s:keys=%d,expires=%d,avg_ttl=%d\r\n", name, d.keys, d.expires, avg)
	}
	return b
}

func (p *request) infoReply(out []byte) []byte {
	c := p.children[0]
	text, ok := infoText(c.reply)
	if !ok {
		return append(out, c.reply...)
	}
	b := text
	if !p.sess.l.srv.facadeOn() {
		b = bytes.ReplaceAll(b, []byte("redis_mode:cluster"), []byte("redis_mode:standalone"))
		b = bytes.ReplaceAll(b, []byte("cluster_enabled:1"), []byte("cluster_enabled:0"))
	}
	srv := p.sess.l.srv
	b = rewriteInfoFields(b, srv.proxyInfoFields())
	if len(p.children) > 1 {
		var replies [][]byte
		for _, k := range p.children[1:] {
			replies = append(replies, k.reply)
		}
		body := sumKeyspace(replies)
		b = replaceSection(b, "Keyspace", func(dst []byte) []byte { return append(dst, body...) })
		b = rewriteInfoFields(b, sumCounters(replies))
	}
	// The master's counts are of what the proxy sent it; a client of the proxy wants the proxy's own.
	b = replaceSection(b, "Commandstats", srv.appendCommandstats)
	b = replaceSection(b, "Latencystats", srv.appendLatencystats)
	b = replaceSection(b, "Errorstats", srv.appendErrorstats)
	if len(p.order) > 0 {
		b = srv.appendInfoSection(b)
	}
	return p.sess.appendText(out, b)
}

// replaceSection replaces INFO text's section "# name" (to the next section) with what write appends, if
// the text has that section.
func replaceSection(text []byte, name string, write func([]byte) []byte) []byte {
	head := []byte("# " + name + "\r\n")
	i := bytes.Index(text, head)
	if i < 0 || i > 0 && !bytes.HasSuffix(text[:i], []byte("\n")) {
		return text
	}
	end := len(text)
	if j := bytes.Index(text[i+len(head):], []byte("\r\n# ")); j >= 0 {
		end = i + len(head) + j + 2
	}
	out := write(append([]byte(nil), text[:i]...))
	if end < len(text) {
		out = append(out, "\r\n"...)
	}
	return append(out, text[end:]...)
}
