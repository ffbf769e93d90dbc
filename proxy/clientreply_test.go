package proxy_test

import "testing"

// TestClientReplyMatchesStandalone: CLIENT REPLY OFF, SKIP and ON through the proxy drop exactly the replies a
// standalone Redis drops, for commands the proxy answers, forwards, splits over slots, runs on a lease
// (blocking, transactions) or refuses; RESET turns replies back on. The tracking commands answer as for a
// client that never enabled tracking.
func TestClientReplyMatchesStandalone(t *testing.T) {
	pipelined(t, split(`
		DEL {cr}k {cr}n {cr}l
		CLIENT REPLY OFF
		SET {cr}k 1
		GET {cr}k
		CLIENT REPLY SKIP
		INCR {cr}n
		NOSUCH
		CLIENT REPLY ON
		GET {cr}k
		CLIENT REPLY SKIP
		GET {cr}k
		PING
		CLIENT REPLY SKIP
		MGET {cr}k a b c
		ECHO after-mget
		CLIENT REPLY SKIP
		BLPOP {cr}l 0.01
		ECHO after-blpop
		CLIENT REPLY SKIP
		MULTI
		INCR {cr}n
		EXEC
		CLIENT REPLY bogus
		CLIENT REPLY
		CLIENT TRACKINGINFO
		CLIENT GETREDIR
		CLIENT REPLY OFF
		GET {cr}n
		RESET
		GET {cr}n
		CLIENT REPLY SKIP
		CLIENT REPLY SKIP
		ECHO two-skips
		ECHO end
	`))
}
