// Command gnetfloor is the least a gnet server keeps per client connection: one event loop, the proxy's
// options, no state of its own, +PONG to whatever arrives. Its RSS per connection, measured as the proxy's
// is, shows the proxy's own share of that figure:
//
//	go build -o /tmp/gnetfloor ./bench/gnetfloor && /tmp/gnetfloor -addr 127.0.0.1:17031 &
//	python3 bench/hold_conns.py 127.0.0.1 17031 10000 /tmp/held    # [noping]; VmRSS before and after
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/panjf2000/gnet/v2"
)

type server struct{ gnet.BuiltinEventEngine }

var pong = []byte("+PONG\r\n")

func (*server) OnTraffic(c gnet.Conn) gnet.Action {
	if b, _ := c.Next(-1); len(b) > 0 {
		_, _ = c.Write(pong)
	}
	return gnet.None
}

func main() {
	addr := flag.String("addr", "127.0.0.1:17031", "listen address")
	flag.Parse()
	err := gnet.Run(&server{}, "tcp://"+*addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(1),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithReadBufferCap(1<<20))
	fmt.Fprintln(os.Stderr, "gnetfloor:", err)
	os.Exit(1)
}
