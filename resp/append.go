package resp

import (
	"strconv"
	"strings"
)

// The Append functions encode RESP into dst and return the extended slice, strconv style, so a session can
// gather a whole batch of replies in one reused buffer and write it once.

// AppendArrayHeader appends "*<n>\r\n".
func AppendArrayHeader(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends b as a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNullBulk appends "$-1\r\n".
func AppendNullBulk(dst []byte) []byte { return append(dst, "$-1\r\n"...) }

// AppendNullArray appends "*-1\r\n".
func AppendNullArray(dst []byte) []byte { return append(dst, "*-1\r\n"...) }

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendOK appends "+OK\r\n".
func AppendOK(dst []byte) []byte { return append(dst, "+OK\r\n"...) }

// AppendSimple appends a simple string reply. A CR or LF in s becomes a space: one stray newline would put
// the client out of step with every reply after it.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	return appendLine(dst, s)
}

// AppendError appends an error reply. msg starts with the error code ("ERR ...", "CROSSSLOT ..."); a CR or
// LF in it becomes a space, as Redis does (addReplyErrorLength), so the reply stays one line.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	return appendLine(dst, msg)
}

// appendLine appends s and "\r\n", with any CR or LF in s replaced by a space.
func appendLine(dst []byte, s string) []byte {
	if strings.IndexAny(s, "\r\n") < 0 {
		dst = append(dst, s...)
		return append(dst, '\r', '\n')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// AppendCommand appends a request as a multibulk, the only form a backend is sent.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendCommandStrings appends a request as a multibulk.
func AppendCommandStrings(dst []byte, args ...string) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulkString(dst, a)
	}
	return dst
}

// RESP3 (Redis's resp3 spec; what Redis 7.0 sends a client after HELLO 3).

// AppendMapHeader appends "%<n>\r\n": a map of n key-value pairs follows.
func AppendMapHeader(dst []byte, n int) []byte { return appendHeader(dst, '%', n) }

// AppendSetHeader appends "~<n>\r\n".
func AppendSetHeader(dst []byte, n int) []byte { return appendHeader(dst, '~', n) }

// AppendPushHeader appends "><n>\r\n": an out-of-band message (Pub/Sub) of n elements follows.
func AppendPushHeader(dst []byte, n int) []byte { return appendHeader(dst, '>', n) }

// AppendNull appends RESP3's null, "_\r\n", which stands for RESP2's null bulk and null array alike.
func AppendNull(dst []byte) []byte { return append(dst, "_\r\n"...) }

// AppendVerbatim appends a verbatim string of format (three bytes: "txt", "mkd") and text.
func AppendVerbatim(dst []byte, format string, text []byte) []byte {
	dst = append(dst, '=')
	dst = strconv.AppendInt(dst, int64(len(format)+1+len(text)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, format...)
	dst = append(dst, ':')
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

func appendHeader(dst []byte, typ byte, n int) []byte {
	dst = append(dst, typ)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}
