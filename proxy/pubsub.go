package proxy

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/proxy/command"
	"github.com/slotproxy/slotproxy/resp"
	"github.com/slotproxy/slotproxy/topology"
)

// Pub/Sub. The proxy keeps each subscriber's channels, patterns and shard channels itself and answers the
// (un)subscribe commands with Redis's frames and counts; the nodes carry the messages, over connections leased
// for the subscriber (backend Lease in push mode):
//
//   - SUBSCRIBE and PSUBSCRIBE go to one node, a random master: Redis Cluster sends every PUBLISH to every
//     node, so one is enough. A subscribe frame reaches the client once the node has confirmed the
//     subscription, so a message published after the client saw it is delivered.
//   - SSUBSCRIBE goes to a node of the channel's shard, chosen by the slot (loop.publishNode), and so does
//     SPUBLISH through the proxy: a shard's node sends each SPUBLISH to the shard's other nodes, and one node
//     for both keeps a publisher's messages in order. A failover keeps the node. The channels of one
//     SSUBSCRIBE must share a slot (CROSSSLOT).
//   - A slot that moves to another shard takes its shard channels with it: the old node sends sunsubscribe,
//     and the proxy subscribes at once where the slot is now. Messages the old shard took in between (its
//     nodes learn of the move one after the other) are lost, as they are for any Redis Cluster client.
//   - Messages are passed on as the node sent them, in the order it sent them, and only for what the client is
//     subscribed to now (an unsubscribe is answered at once; the node's late messages are dropped).
//   - When a subscriber's connection is lost (a node killed), the proxy subscribes again on another node,
//     by itself; messages published in between are lost, as Redis's Pub/Sub is at most once. When a node
//     gives a shard channel up (its slot moved: an unsolicited sunsubscribe), the proxy subscribes again where
//     the slot is now; the client sees nothing of it.
//
// In subscribed mode a RESP2 client may send only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT and RESET, as
// in Redis, with Redis's error otherwise; a RESP3 client may send anything, and its frames are push messages
// (resp3.go).

// pubsub is a session's subscriptions.
type pubsub struct {
	sess         *session
	channels     map[string]bool
	patterns     map[string]bool
	shard        map[string]*subLink // shard channel -> the link that carries it
	global       *subLink            // carries channels and patterns
	links        map[string]*subLink // shard links by node address
	lostAddr     string              // the node of the last link lost: a new global link avoids it
	relinkFailed bool                // the last resubscribe found no connection to lease
}

func (ps *pubsub) count() int { return len(ps.channels) + len(ps.patterns) }

// busy is BUSY (a script running long on the node) or another error transient() knows.
func isBusy(reply []byte) bool { return bytes.HasPrefix(reply, []byte("-BUSY")) }

// subscribed tells whether the session is in subscribed mode.
func (s *session) subscribed() bool {
	return s.ps != nil && (s.ps.count() > 0 || len(s.ps.shard) > 0)
}

func (s *session) pubsubState() *pubsub {
	if s.ps == nil {
		s.ps = &pubsub{sess: s, channels: map[string]bool{}, patterns: map[string]bool{},
			shard: map[string]*subLink{}, links: map[string]*subLink{}}
	}
	return s.ps
}

// subLink is one leased connection of a subscriber.
type subLink struct {
	ps    *pubsub
	lease *backend.Lease
	addr  string
	shard bool
	waits []*subWait // commands sent, oldest first, whose confirmations have not all come
	dead  bool
}

// subWait is one command sent on a link: its confirmations (one per channel) or its one error.
type subWait struct {
	kind   string          // the frame kind it is answered with: subscribe, psubscribe, ssubscribe, unsubscribe ...
	left   map[string]bool // channels not confirmed yet
	chans  []string
	done   func(errReply []byte) // when every channel is confirmed (nil), or on an error; may be nil
	sentAt int64
}

// discard is a Sink for requests on a push-mode lease: their replies come through Push.
type discard struct{}

func (discard) Reply(*backend.Request, []byte) {}

// newLink leases a connection to addr for the session's subscriptions.
func (ps *pubsub) newLink(addr string, shard bool) *subLink {
	lease := ps.sess.l.pool.Lease(addr)
	if lease == nil {
		return nil
	}
	k := &subLink{ps: ps, lease: lease, addr: addr, shard: shard}
	lease.Push(k)
	return k
}

// send writes one (un)subscribe command for chans and awaits its confirmations.
func (k *subLink) send(kind string, chans []string, done func([]byte)) {
	k.resend(&subWait{kind: kind, chans: chans, done: done, sentAt: time.Now().UnixNano()})
}

func (k *subLink) resend(w *subWait) {
	w.left = make(map[string]bool, len(w.chans))
	args := make([][]byte, 0, len(w.chans)+1)
	args = append(args, []byte(strings.ToUpper(w.kind)))
	for _, c := range w.chans {
		w.left[c] = true
		args = append(args, []byte(c))
	}
	k.waits = append(k.waits, w)
	l := k.ps.sess.l
	r := &backend.Request{Raw: resp.AppendCommand(nil, args...), Sink: discard{}, Deadline: time.Now().UnixNano() + l.timeout}
	k.lease.Send(r)
	l.pool.Flush()
	if w.done == nil {
		return
	}
	// A node that stays connected but does not answer would hold the client's reply for ever: past the
	// request timeout the link is given up and its channels subscribed elsewhere.
	time.AfterFunc(time.Duration(l.timeout), func() {
		_ = l.el.Execute(context.Background(), runnable(func() {
			if !k.dead && slices.Contains(k.waits, w) {
				l.srv.log.Warn("subscriber's node did not confirm in time; subscribing elsewhere", "node", k.addr)
				k.lease.Close()
				k.Lost()
				l.flush()
			}
		}))
	})
}

// close gives the link up; replies still waiting on it are given as they are (the client unsubscribed or
// reset meanwhile: Redis would have answered the subscribe before).
func (k *subLink) close() {
	if !k.dead {
		k.dead = true
		k.lease.Close()
		for _, d := range k.pendingDones() {
			d(nil)
		}
	}
}

// Push takes what the node sends on the link (backend.PushSink).
func (k *subLink) Push(frame []byte) {
	ps := k.ps
	if k.dead || ps.sess.closed {
		return
	}
	if resp.IsError(frame) {
		k.failed(frame)
		return
	}
	var elems [3][]byte
	parts, ok := resp.ArrayElems(frame, elems[:0])
	if !ok || len(parts) < 3 {
		return
	}
	kind, _, _ := resp.BulkValue(parts[0])
	name, _, _ := resp.BulkValue(parts[1])
	switch string(kind) {
	case "message":
		if ps.channels[string(name)] && !k.shard {
			ps.sess.pushFrame(frame)
		}
	case "pmessage":
		if ps.patterns[string(name)] && !k.shard {
			ps.sess.pushFrame(frame)
		}
	case "smessage":
		if ps.shard[string(name)] == k {
			ps.sess.pushFrame(frame)
		}
	default:
		k.confirmed(string(kind), string(name))
	}
}

// confirmed takes one confirmation frame: it belongs to the oldest command that waits for it, unless the node
// sent it unasked (a shard channel given up when its slot moved).
func (k *subLink) confirmed(kind, ch string) {
	for i, w := range k.waits { // the node answers in order: the first command still waiting for it
		if w.kind != kind || !w.left[ch] {
			continue
		}
		delete(w.left, ch)
		if len(w.left) == 0 {
			k.waits = slices.Delete(k.waits, i, i+1)
			if w.done != nil {
				w.done(nil)
			}
			if len(k.waits) == 0 {
				k.ps.closeIdleLinks() // everything may have been unsubscribed meanwhile
			}
		}
		return
	}
	if kind == "sunsubscribe" && k.ps.shard[ch] == k {
		// At once: every message published meanwhile is lost. A stale map sends it to a node that answers
		// MOVED, which failed follows.
		k.ps.sess.l.srv.log.Debug("node gave a shard channel up; subscribing where its slot is", "node", k.addr)
		k.ps.shard[ch] = nil
		k.ps.sess.l.srv.topo.RequestRefresh()
		k.ps.relinkNow(nil)
	}
}

// failed takes an error: the answer to the oldest command as a whole. A shard channel's slot elsewhere
// (MOVED, ASK) sends the command there; any other error reaches the client.
func (k *subLink) failed(frame []byte) {
	if len(k.waits) == 0 {
		return
	}
	w := k.waits[0]
	k.waits = k.waits[1:]
	ps := k.ps
	if addr, _, ok := backend.Redirection(frame, k.addr); ok && k.shard && w.kind == "ssubscribe" {
		if to := ps.shardLink(addr); to != nil {
			for _, c := range w.chans {
				if ps.shard[c] == k {
					ps.shard[c] = to
				}
			}
			to.send(w.kind, w.chans, w.done)
			ps.closeIdleLinks()
			return
		}
	}
	if (transient(frame) || isBusy(frame)) && !k.dead && time.Now().UnixNano()-w.sentAt < ps.sess.l.timeout {
		// The node did not take it for now (LOADING, BUSY script, a failover under way): ask again shortly.
		l := ps.sess.l
		time.AfterFunc(50*time.Millisecond, func() {
			_ = l.el.Execute(context.Background(), runnable(func() {
				if !k.dead && !ps.sess.closed {
					k.resend(w)
					l.flush()
				} else if w.done != nil {
					w.done(nil)
				}
			}))
		})
		return
	}
	// Refused (an ACL, a bad name): as in Redis, the client is not subscribed to any of the command's names.
	for _, c := range w.chans {
		switch w.kind {
		case "subscribe":
			delete(ps.channels, c)
		case "psubscribe":
			delete(ps.patterns, c)
		case "ssubscribe":
			if ps.shard[c] == k {
				delete(ps.shard, c)
			}
		}
	}
	ps.closeIdleLinks()
	if w.done != nil {
		w.done(frame)
	}
}

// Lost: the link's connection is gone (backend.PushSink). What it carried is subscribed again elsewhere.
func (k *subLink) Lost() {
	if k.dead {
		return
	}
	k.dead = true
	ps := k.ps
	if ps.sess.closed {
		return
	}
	dones := k.pendingDones()
	ps.lostAddr = k.addr
	if ps.global == k {
		ps.global = nil
	}
	delete(ps.links, k.addr)
	for c, l := range ps.shard {
		if l == k {
			ps.shard[c] = nil
		}
	}
	ps.scheduleRelink(dones...)
}

// pendingDones are the client replies still waiting on the link's confirmations.
func (k *subLink) pendingDones() []func([]byte) {
	var dones []func([]byte)
	for _, w := range k.waits {
		if w.done != nil {
			dones = append(dones, w.done)
		}
	}
	k.waits = nil
	return dones
}

// scheduleRelink subscribes again, after a backoff, to whatever has no live link; then dones run. The
// first try after a loss comes at once (10 ms): messages are lost meanwhile; tries that found no
// connection to lease back off to the retry backoff's maximum.
func (ps *pubsub) scheduleRelink(dones ...func([]byte)) {
	l := ps.sess.l
	l.srv.topo.RequestRefresh()
	delay := 10 * time.Millisecond
	if ps.relinkFailed {
		delay = max(l.srv.bcfg.Load().RetryBackoffMax, delay)
	}
	time.AfterFunc(delay, func() {
		_ = l.el.Execute(context.Background(), runnable(func() {
			ps.relinkNow(dones)
			l.flush()
		}))
	})
}

func (ps *pubsub) relinkNow(dones []func([]byte)) {
	s := ps.sess
	ps.relinkFailed = true // until it gets through
	if s.closed {
		return
	}
	all := func(err []byte) {
		for _, d := range dones {
			d(err)
		}
	}
	pending := 0
	waitAll := func(err []byte) {
		if pending--; pending == 0 || err != nil {
			all(err)
			dones = nil
		}
	}
	if ps.global == nil && ps.count() > 0 {
		if k := ps.globalLink(); k == nil {
			ps.scheduleRelink(dones...)
			return
		} else {
			if len(ps.channels) > 0 {
				pending++
				k.send("subscribe", sortedKeys(ps.channels), waitAll)
			}
			if len(ps.patterns) > 0 {
				pending++
				k.send("psubscribe", sortedKeys(ps.patterns), waitAll)
			}
		}
	}
	bySlot := map[int][]string{}
	for c, k := range ps.shard {
		if k == nil || k.dead {
			slot := int(topology.Slot([]byte(c)))
			bySlot[slot] = append(bySlot[slot], c)
		}
	}
	for slot, chans := range bySlot {
		k := ps.shardLink(ps.shardNode(slot))
		if k == nil {
			ps.scheduleRelink(dones...)
			return
		}
		slices.Sort(chans)
		for _, c := range chans {
			ps.shard[c] = k
		}
		pending++
		k.send("ssubscribe", chans, waitAll)
	}
	ps.relinkFailed = false
	if pending == 0 {
		all(nil)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// globalLink is the link for channels and patterns, leased from a random master if there is none; after a
// lost link, from a random node other than the one lost (the map may still name it a master).
func (ps *pubsub) globalLink() *subLink {
	if ps.global != nil && !ps.global.dead {
		return ps.global
	}
	snap := ps.sess.l.pool.Snapshot()
	if snap == nil {
		return nil
	}
	addr := snap.Nodes[snap.MasterOf(uint16(ps.sess.l.randomSlot()))].Addr
	if ps.lostAddr != "" && len(snap.Nodes) > 1 {
		for addr == ps.lostAddr {
			addr = snap.Nodes[ps.sess.l.rng.Uint64()%uint64(len(snap.Nodes))].Addr
		}
	}
	ps.global = ps.newLink(addr, false)
	return ps.global
}

func (ps *pubsub) shardNode(slot int) string {
	if snap := ps.sess.l.pool.Snapshot(); snap != nil {
		now := time.Now().UnixNano()
		return shardChannelNode(snap, slot, func(addr string) bool {
			return !ps.sess.l.pool.FailedWithin(addr, now, pubLinger)
		})
	}
	return ""
}

// shardChannelNode is where shard channels of slot are subscribed: a replica of the slot's shard that ok
// takes, else the master. A promoted replica keeps its subscribers; a demoted master sends sunsubscribe.
func shardChannelNode(snap *topology.Snapshot, slot int, ok func(addr string) bool) string {
	sh := snap.Shards[snap.Slots[slot]]
	for _, r := range sh.Replicas {
		if ok(snap.Nodes[r].Addr) {
			return snap.Nodes[r].Addr
		}
	}
	return snap.Nodes[sh.Master].Addr
}

// cmdSpublish sends SPUBLISH to the node shard channel subscribers of its slot use, and then to that node
// while it stays in the shard (loop.spublishNode), so that a publisher's messages stay in order through a
// failover; a redirect or a failure sends it to the slot's master.
func cmdSpublish(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	r := s.l.newRequest(s)
	r.be.Raw = appendRaw(r.be.Raw, args, raw)
	slot := int(topology.Slot(args[1]))
	s.prepare(r, cmd, slot, now)
	if snap := s.l.pool.Snapshot(); snap != nil {
		r.be.Node = s.l.spublishNode(snap, slot, now)
	}
	s.send(r)
}

// shardLink is the session's link to addr for shard channels.
func (ps *pubsub) shardLink(addr string) *subLink {
	if addr == "" {
		return nil
	}
	if k := ps.links[addr]; k != nil && !k.dead {
		return k
	}
	k := ps.newLink(addr, true)
	if k != nil {
		ps.links[addr] = k
	}
	return k
}

// closeIdleLinks gives up the shard links that carry no channel and wait for nothing.
func (ps *pubsub) closeIdleLinks() {
	for addr, k := range ps.links {
		used := len(k.waits) > 0
		for _, l := range ps.shard {
			used = used || l == k
		}
		if !used {
			k.close()
			delete(ps.links, addr)
		}
	}
	if g := ps.global; g != nil && ps.count() == 0 && len(g.waits) == 0 {
		g.close()
		ps.global = nil
	}
}

// closeAll ends every subscription (RESET, the client's end).
func (ps *pubsub) closeAll() {
	if ps.global != nil {
		ps.global.close()
	}
	for _, k := range ps.links {
		k.close()
	}
	clear(ps.channels)
	clear(ps.patterns)
	clear(ps.shard)
	clear(ps.links)
	ps.global = nil
}

// pushFrame gives the client a message, in order with the replies before it. The links speak RESP2: for a
// RESP3 session the array header of the frame becomes a push header (resp3.go).
func (s *session) pushFrame(frame []byte) {
	if s.resp3 && len(frame) > 0 && frame[0] == '*' {
		s.l.pushBuf = append(append(s.l.pushBuf[:0], '>'), frame[1:]...)
		frame = s.l.pushBuf
		if cap(s.l.pushBuf) > 64<<10 {
			s.l.pushBuf = nil // the frame is copied or written below; a big one must not stay pinned
		}
	}
	if s.queueLen() == 0 {
		s.emit(frame)
	} else {
		r := s.l.newRequest(s)
		r.reply = append(r.reply[:0], frame...)
		r.done = true
		s.queued += len(frame)
		s.work().queue.Push(r)
	}
	s.l.touch(s)
}

func (s *session) appendSubFrame(b []byte, kind string, ch []byte, count int) []byte {
	b = s.appendPushHeader(b, 3)
	b = resp.AppendBulkString(b, kind)
	if ch == nil {
		b = s.appendNullBulk(b)
	} else {
		b = resp.AppendBulk(b, ch)
	}
	return resp.AppendInt(b, int64(count))
}

// awaitReply queues the client's reply (frames) in order, to be given once done is called; an error reply
// replaces it.
func (s *session) awaitReply(frames []byte) func([]byte) {
	r := s.l.newRequest(s)
	s.work().queue.Push(r)
	once := false
	return func(errReply []byte) {
		if once {
			return
		}
		once = true
		if errReply != nil {
			r.Reply(&r.be, errReply)
			return
		}
		r.Reply(&r.be, frames)
	}
}

func cmdSubscribe(s *session, cmd *command.Command, args [][]byte, _ []byte, _ int64) {
	s.silentNow = false // Redis sends (un)subscribe frames whatever CLIENT REPLY says
	ps := s.pubsubState()
	kind, set := "subscribe", ps.channels
	if cmd.Name == "psubscribe" {
		kind, set = "psubscribe", ps.patterns
	}
	var frames []byte
	var fresh []string
	for _, a := range args[1:] {
		if c := string(a); !set[c] {
			set[c] = true
			fresh = append(fresh, c)
		}
		frames = s.appendSubFrame(frames, kind, a, ps.count())
	}
	if len(fresh) == 0 {
		s.local(frames)
		return
	}
	k := ps.globalLink()
	if k == nil {
		for _, c := range fresh {
			delete(set, c)
		}
		s.local(errLeases(s, "a subscriber"))
		return
	}
	k.send(kind, fresh, s.awaitReply(frames))
}

func errLeases(s *session, what string) []byte {
	return resp.AppendError(nil, "ERR no connection for "+what+": max_leased_conns reached, or the cluster is down")
}

func cmdSsubscribe(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	s.silentNow = false // Redis sends (un)subscribe frames whatever CLIENT REPLY says
	slot := topology.Slot(args[1])
	for _, a := range args[2:] {
		if topology.Slot(a) != slot {
			s.local(errCrossSlot)
			return
		}
	}
	ps := s.pubsubState()
	var frames []byte
	var fresh []string
	for _, a := range args[1:] {
		if _, ok := ps.shard[string(a)]; !ok && !slices.Contains(fresh, string(a)) {
			fresh = append(fresh, string(a))
		}
		frames = s.appendSubFrame(frames, "ssubscribe", a, len(ps.shard)+len(fresh))
	}
	if len(fresh) == 0 {
		s.local(frames)
		return
	}
	k := ps.shardLink(ps.shardNode(int(slot)))
	if k == nil {
		s.local(errLeases(s, "a shard channel subscriber"))
		return
	}
	for _, c := range fresh {
		ps.shard[c] = k
	}
	k.send("ssubscribe", fresh, s.awaitReply(frames))
}

func cmdUnsubscribe(s *session, cmd *command.Command, args [][]byte, _ []byte, _ int64) {
	s.silentNow = false // Redis sends (un)subscribe frames whatever CLIENT REPLY says
	ps := s.pubsubState()
	kind, set := "unsubscribe", ps.channels
	if cmd.Name == "punsubscribe" {
		kind, set = "punsubscribe", ps.patterns
	}
	names := args[1:]
	if len(names) == 0 {
		for _, c := range sortedKeys(set) {
			names = append(names, []byte(c))
		}
	}
	var frames []byte
	var gone []string
	for _, a := range names {
		if set[string(a)] {
			delete(set, string(a))
			gone = append(gone, string(a))
		}
		frames = s.appendSubFrame(frames, kind, a, ps.count())
	}
	if len(names) == 0 {
		frames = s.appendSubFrame(frames, kind, nil, ps.count())
	}
	if k := ps.global; k != nil && len(gone) > 0 && ps.count() > 0 {
		k.send(kind, gone, nil)
	}
	ps.closeIdleLinks()
	s.local(frames)
}

func cmdSunsubscribe(s *session, _ *command.Command, args [][]byte, _ []byte, _ int64) {
	s.silentNow = false // Redis sends (un)subscribe frames whatever CLIENT REPLY says
	ps := s.pubsubState()
	names := args[1:]
	if len(names) == 0 {
		for _, c := range sortedKeys(shardSet(ps.shard)) {
			names = append(names, []byte(c))
		}
	}
	var frames []byte
	for _, a := range names {
		if k, ok := ps.shard[string(a)]; ok {
			delete(ps.shard, string(a))
			if k != nil && !k.dead {
				k.send("sunsubscribe", []string{string(a)}, nil)
			}
		}
		frames = s.appendSubFrame(frames, "sunsubscribe", a, len(ps.shard))
	}
	if len(names) == 0 {
		frames = s.appendSubFrame(frames, "sunsubscribe", nil, 0)
	}
	ps.closeIdleLinks()
	s.local(frames)
}

func shardSet(m map[string]*subLink) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// cmdPublish sends PUBLISH to one node chosen by the channel's slot among all the nodes, replicas included
// (loop.publishNode): any node reaches every subscriber, but a publisher's messages stay in order only if
// they enter the cluster through one node (two nodes' cluster bus links race). A failover or a reshard does
// not change the node; only a node leaving the map for long does. If the node fails the request, it goes to
// the master of the channel's slot.
func cmdPublish(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	r := s.l.newRequest(s)
	r.be.Raw = appendRaw(r.be.Raw, args, raw)
	s.prepare(r, cmd, int(topology.Slot(args[1])), now)
	if snap := s.l.pool.Snapshot(); snap != nil {
		r.be.Node = s.l.publishNode(snap, int(topology.Slot(args[1])), now)
	}
	s.send(r)
}

// subscribedOK are the commands Redis takes from a RESP2 client in subscribed mode.
var subscribedOK = map[string]bool{"subscribe": true, "psubscribe": true, "ssubscribe": true,
	"unsubscribe": true, "punsubscribe": true, "sunsubscribe": true, "ping": true, "quit": true, "reset": true}

func errSubscribedMode(cmd *command.Command) []byte {
	return resp.AppendError(nil, "ERR Can't execute '"+cmd.Name+
		"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
}

// pingSubscribed is PING's reply in subscribed mode.
func pingSubscribed(args [][]byte) []byte {
	b := resp.AppendArrayHeader(nil, 2)
	b = resp.AppendBulkString(b, "pong")
	if len(args) > 1 {
		return resp.AppendBulk(b, args[1])
	}
	return resp.AppendBulk(b, []byte{})
}

// PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS and SHARDNUMSUB: a node counts only its own subscribers, so
// the question goes to every node of the map (replicas too: shard channel subscribers are there) and the
// answers are merged as one Redis would answer: channels once each (sorted: Redis's order is its dict's),
// counts summed per channel or in total.
func cmdPubsubQuery(s *session, cmd *command.Command, args [][]byte, raw []byte, now int64) {
	snap := s.l.pool.Snapshot()
	if snap == nil {
		s.local(errClusterDown)
		return
	}
	var merge func(g *nodeCalls) []byte
	switch cmd.Name {
	case "pubsub|channels", "pubsub|shardchannels":
		merge = mergeChannels
	case "pubsub|numsub", "pubsub|shardnumsub":
		merge = mergeNumsub
	default:
		merge = mergeNumpat
	}
	g := s.newNodeCalls(len(snap.Nodes), merge)
	req := appendRaw(nil, args, raw)
	for i := range g.calls {
		c := &g.calls[i]
		c.addr = snap.Nodes[i].Addr
		c.be.Raw, c.be.Node, c.be.Slot = req, c.addr, s.l.randomSlot()
		c.be.Deadline, c.be.ReadOnly = now+s.l.timeout, true
	}
	s.work().queue.Push(g.r)
	for i := range g.calls {
		s.l.pool.Send(&g.calls[i].be)
	}
}

// firstError is the first node's error, which a single Redis would have answered.
func firstError(g *nodeCalls) []byte {
	for i := range g.calls {
		if resp.IsError(g.calls[i].reply) {
			return g.calls[i].reply
		}
	}
	return nil
}

func mergeChannels(g *nodeCalls) []byte {
	if e := firstError(g); e != nil {
		return e
	}
	set := map[string]bool{}
	for i := range g.calls {
		elems, ok := resp.ArrayElems(g.calls[i].reply, nil)
		if !ok {
			return g.calls[i].reply
		}
		for _, e := range elems {
			if v, _, ok := resp.BulkValue(e); ok {
				set[string(v)] = true
			}
		}
	}
	names := sortedKeys(set)
	b := resp.AppendArrayHeader(nil, len(names))
	for _, n := range names {
		b = resp.AppendBulkString(b, n)
	}
	return b
}

func mergeNumsub(g *nodeCalls) []byte {
	if e := firstError(g); e != nil {
		return e
	}
	var names [][]byte
	var counts []int64
	for i := range g.calls {
		elems, ok := resp.ArrayElems(g.calls[i].reply, nil)
		if !ok || len(elems)%2 != 0 || i > 0 && len(elems) != 2*len(names) {
			return g.calls[i].reply
		}
		for j := 0; j < len(elems); j += 2 {
			n, _ := resp.ParseInt(elems[j+1])
			if i == 0 {
				names = append(names, elems[j])
				counts = append(counts, n)
			} else {
				counts[j/2] += n
			}
		}
	}
	b := resp.AppendArrayHeader(nil, 2*len(names))
	for j, name := range names {
		b = append(b, name...)
		b = resp.AppendInt(b, counts[j])
	}
	return b
}

func mergeNumpat(g *nodeCalls) []byte {
	if e := firstError(g); e != nil {
		return e
	}
	var sum int64
	for i := range g.calls {
		n, ok := resp.ParseInt(g.calls[i].reply)
		if !ok {
			return g.calls[i].reply
		}
		sum += n
	}
	return resp.AppendInt(nil, sum)
}
