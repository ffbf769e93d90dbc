package topology

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A tiny RESP2 reader for the control connections. It builds a tree (the replies it reads are small and read
// once every few seconds) and bounds everything it is told by the wire before allocating. The request path
// never uses it.

const (
	maxBulkLen  = 64 << 20 // CLUSTER NODES of a 1000-node cluster is well under 1 MiB
	maxArrayLen = 1 << 20
	maxDepth    = 8 // CLUSTER SLOTS nests 3 deep (4 with the RESP2 form of the metadata map)
)

// value is one RESP2 reply.
type value struct {
	kind  byte    // '+', '-', ':', '$' or '*'
	str   []byte  // '+', '-', '$'
	num   int64   // ':'
	null  bool    // "$-1" or "*-1"
	elems []value // '*'
}

func (v value) isError() bool { return v.kind == '-' }

var errProtocol = errors.New("malformed RESP reply")

func readValue(r *bufio.Reader, depth int) (value, error) {
	if depth > maxDepth {
		return value{}, fmt.Errorf("%w: nested deeper than %d", errProtocol, maxDepth)
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			err = fmt.Errorf("%w: line longer than %d bytes", errProtocol, r.Size())
		}
		return value{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return value{}, fmt.Errorf("%w: %q", errProtocol, line)
	}
	v := value{kind: line[0]}
	body := line[1 : len(line)-2]
	switch v.kind {
	case '+', '-':
		v.str = append([]byte(nil), body...)
	case ':':
		if v.num, err = strconv.ParseInt(string(body), 10, 64); err != nil {
			return value{}, fmt.Errorf("%w: integer %q", errProtocol, body)
		}
	case '$':
		n, err := strconv.Atoi(string(body))
		switch {
		case err != nil || n < -1 || n > maxBulkLen:
			return value{}, fmt.Errorf("%w: bulk length %q", errProtocol, body)
		case n == -1:
			v.null = true
			return v, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return value{}, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return value{}, fmt.Errorf("%w: bulk not followed by CRLF", errProtocol)
		}
		v.str = buf[:n]
	case '*':
		n, err := strconv.Atoi(string(body))
		switch {
		case err != nil || n < -1 || n > maxArrayLen:
			return value{}, fmt.Errorf("%w: array length %q", errProtocol, body)
		case n == -1:
			v.null = true
			return v, nil
		}
		v.elems = make([]value, 0, min(n, 64)) // grows with what arrives, not with what is claimed
		for range n {
			e, err := readValue(r, depth+1)
			if err != nil {
				return value{}, err
			}
			v.elems = append(v.elems, e)
		}
	default:
		return value{}, fmt.Errorf("%w: type byte %q", errProtocol, v.kind)
	}
	return v, nil
}

func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}
