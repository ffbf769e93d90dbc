package resp

// Limits, the same as Redis 7.0's defaults. They are checked before anything is sized from the wire.
const (
	MaxBulkLen     = 512 << 20 // proto-max-bulk-len
	MaxInlineSize  = 64 << 10  // PROTO_INLINE_MAX_SIZE: an inline request, a count line or a bulk header
	MaxQueryBuffer = 1 << 30   // client-query-buffer-limit; enforced by the caller, which owns the buffer
	maxMultibulk   = 1<<31 - 1 // INT_MAX
)

// ProtocolError is a malformed request. Its text is Redis's, so a client sees the same reply from the proxy
// as from a server: "-ERR " + Error(), after which the connection is closed.
type ProtocolError string

func (e ProtocolError) Error() string { return "Protocol error: " + string(e) }

// The texts are those of Redis 7.0.15 networking.c; TestLiveRedis compares them with a real server. The
// variables have type error, not ProtocolError, so that returning one does not convert (and allocate).
var (
	ErrInvalidMultibulkLength error = ProtocolError("invalid multibulk length")
	ErrInvalidBulkLength      error = ProtocolError("invalid bulk length")
	ErrTooBigMbulkCount       error = ProtocolError("too big mbulk count string")
	ErrTooBigBulkCount        error = ProtocolError("too big bulk count string")
	ErrTooBigInline           error = ProtocolError("too big inline request")
	ErrUnbalancedQuotes       error = ProtocolError("unbalanced quotes in request")
	ErrUnauthMultibulkLength  error = ProtocolError("unauthenticated multibulk length")
	ErrUnauthBulkLength       error = ProtocolError("unauthenticated bulk length")
)

// ExpectedDollar is the error for a multibulk element that does not start with '$'. Redis prints the byte
// as is (%c); AppendError turns a CR or LF into a space.
func ExpectedDollar(c byte) error {
	return ProtocolError("expected '$', got '" + string([]byte{c}) + "'")
}

// ParseDecimal is Redis's string2ll (util.c): an optional '-', no '+', no leading zeros (so no "-0"), no
// blanks, fewer than 21 bytes, within int64. The wire's lengths and counts, and commands' key counts, are
// read this way.
func ParseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}
