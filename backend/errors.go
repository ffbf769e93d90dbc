package backend

import (
	"bytes"
	"net"
	"strconv"
)

// errorKind classifies a Redis error reply by what the proxy must do with it.
type errorKind uint8

const (
	errOther       errorKind = iota // an answer for the client
	errMoved                        // -MOVED slot host:port: resend there, refresh the map
	errAsk                          // -ASK slot host:port: resend there after ASKING, map unchanged
	errTryAgain                     // -TRYAGAIN: multi-key request during a slot migration; back off and retry
	errClusterDown                  // -CLUSTERDOWN: back off, refresh, retry
	errLoading                      // -LOADING: the node is starting; back off and retry
	errReadOnly                     // -READONLY: the node became a replica; refresh and retry
	errMasterDown                   // -MASTERDOWN: a replica lost its master; retry (on the master)
)

// String is the reply's error code, for messages.
func (k errorKind) String() string {
	switch k {
	case errMoved:
		return "MOVED"
	case errAsk:
		return "ASK"
	case errTryAgain:
		return "TRYAGAIN"
	case errClusterDown:
		return "CLUSTERDOWN"
	case errLoading:
		return "LOADING"
	case errReadOnly:
		return "READONLY"
	case errMasterDown:
		return "MASTERDOWN"
	}
	return "error"
}

var (
	prefixMoved       = []byte("-MOVED ")
	prefixAsk         = []byte("-ASK ")
	prefixTryAgain    = []byte("-TRYAGAIN")
	prefixClusterDown = []byte("-CLUSTERDOWN")
	prefixLoading     = []byte("-LOADING")
	prefixReadOnly    = []byte("-READONLY")
	prefixMasterDown  = []byte("-MASTERDOWN")
)

// classify looks at a reply; only error replies beginning with one of the cluster prefixes are special.
func classify(reply []byte) errorKind {
	if len(reply) < 2 || reply[0] != '-' {
		return errOther
	}
	switch reply[1] {
	case 'M':
		if bytes.HasPrefix(reply, prefixMoved) {
			return errMoved
		}
		if bytes.HasPrefix(reply, prefixMasterDown) {
			return errMasterDown
		}
	case 'A':
		if bytes.HasPrefix(reply, prefixAsk) {
			return errAsk
		}
	case 'T':
		if bytes.HasPrefix(reply, prefixTryAgain) {
			return errTryAgain
		}
	case 'C':
		if bytes.HasPrefix(reply, prefixClusterDown) {
			return errClusterDown
		}
	case 'L':
		if bytes.HasPrefix(reply, prefixLoading) {
			return errLoading
		}
	case 'R':
		if bytes.HasPrefix(reply, prefixReadOnly) {
			return errReadOnly
		}
	}
	return errOther
}

// redirectTarget parses "-MOVED 3999 127.0.0.1:6381\r\n" or "-ASK ..." into the target address. An empty host
// means the node that sent the redirect (Redis: "same endpoint you asked"). from is that node's address.
func redirectTarget(reply []byte, from string) (addr string, ok bool) {
	line := bytes.TrimRight(reply, "\r\n")
	f := bytes.Fields(line)
	if len(f) != 3 {
		return "", false
	}
	if _, err := strconv.Atoi(string(f[1])); err != nil {
		return "", false
	}
	host, port, err := net.SplitHostPort(string(f[2]))
	if err != nil || port == "" {
		return "", false
	}
	if host == "" || host == "?" {
		fromHost, _, err := net.SplitHostPort(from)
		if err != nil {
			return "", false
		}
		host = fromHost
	}
	return net.JoinHostPort(host, port), true
}

// Redirection reads a MOVED or ASK reply from the node at from: the node it names, and whether it is an ASK.
// ok is false for any other reply.
func Redirection(reply []byte, from string) (addr string, ask, ok bool) {
	switch classify(reply) {
	case errMoved:
	case errAsk:
		ask = true
	default:
		return "", false, false
	}
	addr, ok = redirectTarget(reply, from)
	return addr, ask, ok
}
