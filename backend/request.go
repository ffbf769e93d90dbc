// Package backend owns the pipelined connections from one gnet event loop to the Redis Cluster nodes: it
// queues requests FIFO per connection, writes them in batches, matches replies in order, follows MOVED and
// ASK, and retries TRYAGAIN, CLUSTERDOWN and lost connections with backoff until each request's deadline.
//
// Everything in this package except the dial goroutines runs on the event loop that owns the Pool: no locks.
package backend

// Sink receives the final reply of a request (on a Lease: each of its Replies). It is called on the Pool's event
// loop. reply is valid only during the call. After the (last) call the Pool holds no reference to the request,
// so the sink may recycle it.
type Sink interface {
	Reply(r *Request, reply []byte)
}

// Request is one command on its way to a node. The caller fills the exported fields and keeps the Request alive
// until its Sink is called.
type Request struct {
	Raw        []byte // the command as RESP, owned by the request
	Slot       int    // hash slot: the request goes to its master (or, for reads, a replica by policy)
	ReadOnly   bool   // may be served by a replica under the read policy
	Idempotent bool   // may be resent after its connection died with it in flight
	Affinity   uint32 // picks one of a node's connections, so one client's commands to a node stay in order
	Node       string // send to this node rather than the slot's; a resend after a failure goes by the slot
	Deadline   int64  // unix nanoseconds; past it the request fails with one clear error
	Replies    int    // on a Lease: how many replies Raw asks for (0 means 1); Sink gets each
	Lost       bool   // on a Lease: the replies still owed are the proxy's errors for a lost or unreachable node
	Sink       Sink
	Failed     bool // set by the Pool when the reply is an error it made itself (deadline, lost node, redirects)

	// Owned by the Pool while the request is in it.
	redirects int
	attempts  int
	retryAt   int64
	moved     string // node named by the last MOVED: overrides the slot map for this request
	ask       string // node named by the last ASK: send ASKING first, once
	lastErr   string // the last transient error, returned verbatim if the deadline passes
	sentAt    int64  // unix ns of its last write to a node, for the node's reply latency
}

// Reset clears the request for reuse, keeping its buffer.
func (r *Request) Reset() {
	raw := r.Raw[:0]
	*r = Request{Raw: raw}
}
