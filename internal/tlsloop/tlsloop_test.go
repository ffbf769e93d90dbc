package tlsloop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/slotproxy/slotproxy/internal/redistest"
)

// echo is a gnet server whose TLS clients get back every byte they send, decrypted on the loop and encrypted
// again by the same crypto/tls state: what the proxy's sessions do.
type echo struct {
	gnet.BuiltinEventEngine
	eng     atomic.Pointer[gnet.Engine]
	booted  chan struct{}
	scratch Scratch
	closed  atomic.Int64
}

func (e *echo) OnBoot(eng gnet.Engine) gnet.Action {
	e.eng.Store(&eng)
	close(e.booted)
	return gnet.None
}

func (e *echo) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if p, ok := c.Context().(*Pending); ok {
		c.SetContext(Attach(c, p))
	}
	return nil, gnet.None
}

func (e *echo) OnTraffic(c gnet.Conn) gnet.Action {
	tc, ok := c.Context().(*Conn)
	if !ok {
		return gnet.Close
	}
	err := tc.Fill(&e.scratch)
	if buf, _ := tc.Peek(-1); len(buf) > 0 {
		_, _ = tc.Write(buf)
		_, _ = tc.Discard(len(buf))
	}
	tc.Release()
	if err != nil {
		return gnet.Close
	}
	return gnet.None
}

func (e *echo) OnClose(gnet.Conn, error) gnet.Action {
	e.closed.Add(1)
	return gnet.None
}

// startEcho runs the echo server and a TLS listener whose handshakes hand their sockets to it.
func startEcho(t *testing.T, conf *tls.Config) (addr string, e *echo) {
	t.Helper()
	e = &echo{booted: make(chan struct{})}
	go func() {
		_ = gnet.Run(e, "tcp://127.0.0.1:0", gnet.WithNumEventLoop(2), gnet.WithLoadBalancing(gnet.LeastConnections))
	}()
	<-e.booted
	t.Cleanup(func() { _ = e.eng.Load().Stop(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				p, err := Handshake(nc.(*net.TCPConn), conf, false, 5*time.Second, nil)
				if err != nil {
					nc.Close()
					return
				}
				_ = Enroll(*e.eng.Load(), nil, p)
			}()
		}
	}()
	return ln.Addr().String(), e
}

func testConfigs(t *testing.T) (server, client *tls.Config) {
	f := redistest.MakeTLSFiles(t)
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(f.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// TestEcho: what crypto/tls on the loop must get right, so that a Go upgrade that changes it fails here:
// data sent with the client's Finished (read by the handshake along with it) is answered; 4 MiB each way in
// 20 KiB writes (records over the 16 KiB limit, records split across reads) come back intact; a TLS 1.2
// client works as a 1.3 one does; close_notify closes the connection.
func TestEcho(t *testing.T) {
	server, client := testConfigs(t)
	addr, e := startEcho(t, server)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		conf := client.Clone()
		conf.MaxVersion = version
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		// The first bytes go out at once after the handshake, often in the same segment as the Finished.
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
			t.Fatalf("TLS %x: first bytes back %q, %v", version, got, err)
		}
		msg := bytes.Repeat([]byte("0123456789abcdefghij"), 1024) // 20 KiB
		const rounds = 200
		errc := make(chan error, 1)
		go func() {
			for range rounds {
				if _, err := c.Write(msg); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		back := make([]byte, len(msg)*rounds)
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, back); err != nil {
			t.Fatalf("TLS %x: reading 4 MiB back: %v", version, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, bytes.Repeat(msg, rounds)) {
			t.Fatalf("TLS %x: the 4 MiB came back altered", version)
		}
		if st := c.ConnectionState(); st.Version != version {
			t.Errorf("negotiated %x, want %x", st.Version, version)
		}
		closedBefore := e.closed.Load()
		if err := c.CloseWrite(); err != nil { // close_notify
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("TLS %x: after close_notify the server's side read %v, want EOF", version, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for e.closed.Load() == closedBefore && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if e.closed.Load() == closedBefore {
			t.Errorf("TLS %x: the loop did not close the connection after close_notify", version)
		}
		c.Close()
	}
}
