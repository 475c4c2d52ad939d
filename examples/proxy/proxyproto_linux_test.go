package main

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// TestAcceptProxySplices: after a PROXY header read by prepareProxy
// (header and data in one write), the session still splices both ways
// (the header was read exactly, nothing is left in a user-space buffer,
// and the wrapper unwraps with NetConn), and its client is the header's.
func TestAcceptProxySplices(t *testing.T) {
	noLeaks(t)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, up, func(c net.Conn) { io.Copy(c, c) })
	p, err := pool.New(pool.Config{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", up.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan listener.SessionInfo, 1)
	pl, err := listener.New(&proxyListener{Listener: ln, trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, p, listener.Config{
		Prepare:      prepareProxy(false),
		OnSessionEnd: func(info listener.SessionInfo) { ended <- info },
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { pl.Serve(); close(served) }()
	defer func() { pl.Close(); <-served }()

	c, err := net.DialTimeout("tcp", pl.Addr().String(), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i)
	}
	go c.Write(append([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 5551 80\r\n"), data...))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != data[i] {
			t.Fatalf("byte %d: got %d, want %d", i, got[i], data[i])
		}
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	var info listener.SessionInfo
	select {
	case info = <-ended:
	case <-time.After(waitFor):
		t.Fatal("no session end")
	}
	if info.ClientAddr.String() != "192.0.2.1:5551" {
		t.Errorf("ClientAddr %v; want the header's 192.0.2.1:5551", info.ClientAddr)
	}
	if !info.Result.Up.Spliced || !info.Result.Down.Spliced {
		t.Errorf("Spliced up %v, down %v; want both (result %+v)", info.Result.Up.Spliced, info.Result.Down.Spliced, info.Result)
	}
	if info.Result.Up.Written != int64(len(data)) {
		t.Errorf("to upstream %d bytes; want %d (the header not among them)", info.Result.Up.Written, len(data))
	}
	t.Logf("up: spliced %v (%d of %d bytes by splice); down: spliced %v (%d of %d)", info.Result.Up.Spliced, info.Result.Up.SplicedBytes,
		info.Result.Up.Written, info.Result.Down.Spliced, info.Result.Down.SplicedBytes, info.Result.Down.Written)
}
