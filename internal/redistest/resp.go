package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Error is an error reply from Redis ("-ERR ...", "-MOVED ...") with the leading '-' removed.
type Error string

func (e Error) Error() string { return string(e) }

// Do runs one command on a fresh connection (AUTH first when the server has a Password) and returns the
// reply: string for simple strings and bulks, int64 for integers, nil for NULL, []any for arrays, and an
// Error for an error reply. It is the tool for polling a server whose state is changing: no pool, no retries,
// a 2 s deadline.
func (s *Server) Do(args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var req []byte
	if s.Password != "" {
		req = appendCommand(req, "AUTH", s.Password)
	}
	req = appendCommand(req, args...)
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	if s.Password != "" {
		if _, err := readReply(r, 0); err != nil {
			return nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return readReply(r, 0)
}

// DoString is Do for commands whose reply is a string (INFO, CLUSTER NODES, PING, GET).
func (s *Server) DoString(args ...string) (string, error) {
	v, err := s.Do(args...)
	if err != nil {
		return "", err
	}
	str, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%v: reply is %T, not a string", args, v)
	}
	return str, nil
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

// readReply reads one RESP2 reply. An error reply is returned as an Error together with a nil value; inside
// an array it is kept as an element.
// ReadReply reads one whole reply from r, as Do returns it: an error reply is an Error, returned as the error
// at the top level and as a value inside arrays.
func ReadReply(r *bufio.Reader) (any, error) { return readReply(r, 0) }

func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > 16 {
		return nil, errors.New("reply nested too deeply")
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("bad reply line %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, Error(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n > 512<<20 {
			return nil, fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("bad array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, 0, min(n, 1024))
		for range n {
			v, err := readReply(r, depth+1)
			var re Error
			if errors.As(err, &re) {
				v, err = re, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line[0])
}
