package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

type epollProbe struct {
	gnet.BuiltinEventEngine
	got chan int
	eng chan gnet.Engine
}

func (e *epollProbe) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng <- eng
	return gnet.None
}

func (e *epollProbe) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	epfd := epollFD(c.EventLoop())
	if epfd >= 0 {
		l := &loop{epfd: epfd}
		if l.setInterest(c, false) != nil || l.setInterest(c, true) != nil {
			epfd = -2
		}
	}
	e.got <- epfd
	return nil, gnet.Close
}

// TestEpollFD: read pausing depends on finding gnet's epoll descriptor by reflection; a gnet upgrade that
// moves it must fail here, not silently turn backpressure into buffering.
func TestEpollFD(t *testing.T) {
	e := &epollProbe{got: make(chan int, 1), eng: make(chan gnet.Engine, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	errc := make(chan error, 1)
	go func() { errc <- gnet.Run(e, "tcp://"+addr, gnet.WithNumEventLoop(1)) }()
	eng := <-e.eng
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(ctx)
	}()
	var c net.Conn
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case fd := <-e.got:
		if fd < 0 {
			t.Fatalf("epollFD = %d: gnet's epoll descriptor not found or not usable", fd)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
	}
}
