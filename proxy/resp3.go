package proxy

import (
	"strconv"
	"time"

	"github.com/slotproxy/slotproxy/backend"
	"github.com/slotproxy/slotproxy/resp"
)

// RESP3. A session that says HELLO 3 is answered as Redis 7.0 answers a RESP3 client. What the nodes answer
// comes over connections that said HELLO 3 themselves (loop.pool3) and passes through unchanged; this file
// has the RESP3 forms of what the proxy builds itself: HELLO's map, CLIENT INFO and LIST as verbatim
// strings, CLIENT TRACKINGINFO's map, INFO's verbatim text, CONFIG GET's map, nulls, and the Pub/Sub frames
// as push messages. In RESP3 a subscribed client may send any command, as in Redis.
//
// The subscriber links stay RESP2 whatever the session speaks (pubsub.go): a message frame is an array of
// bulks in RESP2 and the same elements under a push header in RESP3, so pushFrame rewrites one byte, and a
// subscriber that switches protocol keeps its links.
//
// A protocol switch (HELLO 2 or 3, RESET of a RESP3 session) takes effect where it stands in the client's
// order: with requests in flight it waits for their replies, as a WATCH does (heldOp), and the commands
// after it wait for it, so that none goes out on the other protocol's connections before the ones sent
// earlier ran.

// appendDouble is Redis's addReplyDouble: a RESP3 double, or in RESP2 a bulk string of %.17g.
func (s *session) appendDouble(b []byte, d float64) []byte {
	text := strconv.FormatFloat(d, 'g', 17, 64)
	if s.resp3 {
		return append(append(append(b, ','), text...), "\r\n"...)
	}
	return resp.AppendBulkString(b, text)
}

func (s *session) appendNullBulk(b []byte) []byte {
	if s.resp3 {
		return resp.AppendNull(b)
	}
	return resp.AppendNullBulk(b)
}

func (s *session) appendNullArray(b []byte) []byte {
	if s.resp3 {
		return resp.AppendNull(b)
	}
	return resp.AppendNullArray(b)
}

// appendMapHeader starts a map of n pairs: RESP2 sends it as an array of 2n elements.
func (s *session) appendMapHeader(b []byte, n int) []byte {
	if s.resp3 {
		return resp.AppendMapHeader(b, n)
	}
	return resp.AppendArrayHeader(b, 2*n)
}

func (s *session) appendSetHeader(b []byte, n int) []byte {
	if s.resp3 {
		return resp.AppendSetHeader(b, n)
	}
	return resp.AppendArrayHeader(b, n)
}

func (s *session) appendPushHeader(b []byte, n int) []byte {
	if s.resp3 {
		return resp.AppendPushHeader(b, n)
	}
	return resp.AppendArrayHeader(b, n)
}

// appendText is a text reply as Redis's addReplyVerbatim gives it (INFO, CLIENT INFO, CLIENT LIST).
func (s *session) appendText(b, text []byte) []byte {
	if s.resp3 {
		return resp.AppendVerbatim(b, "txt", text)
	}
	return resp.AppendBulk(b, text)
}

// switchProtocol answers with reply() in the protocol resp3 says, once the requests before it are answered.
func (s *session) switchProtocol(resp3 bool, reply func() []byte) {
	if s.resp3 == resp3 || s.queueLen() == 0 {
		s.setProtocol(resp3)
		s.local(reply())
		return
	}
	r := s.l.newRequest(s)
	s.hold(r, &protoSwitch{r: r, resp3: resp3, reply: reply})
}

// protoSwitch is a HELLO or RESET that changes the protocol, waiting for the requests before it.
type protoSwitch struct {
	r     *request
	resp3 bool
	reply func() []byte
}

func (p *protoSwitch) abandon() {}

func (p *protoSwitch) start() {
	p.r.exec = nil
	s := p.r.sess
	s.setProtocol(p.resp3)
	p.r.finish(p.reply())
	s.resumeAfterHeld()
}

func (s *session) setProtocol(resp3 bool) {
	if s.resp3 == resp3 {
		return
	}
	s.resp3 = resp3
	if resp3 {
		s.l.resp3Pool() // made now, by its first client
	}
	if w := s.watch; w != nil {
		// The WATCH stays on its connection, which must answer EXEC in the new protocol too; it is not the
		// pool's kind afterwards, so it is closed rather than reused.
		hello := resp.AppendCommandStrings(nil, "HELLO", "2")
		if resp3 {
			hello = resp.AppendCommandStrings(nil, "HELLO", "3")
		}
		w.lease.Taint()
		w.lease.Send(&backend.Request{Raw: hello, Sink: discard{}, Deadline: time.Now().UnixNano() + s.l.timeout})
	}
}
