package listener

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/selfsigned"
	"github.com/relaykit/relay/pool"
)

// TestTLSListener terminates TLS in front of a plain upstream. A client
// that never completes its handshake must not hold an upstream: it is
// closed after HandshakeTimeout, and the pool never hands anything out
// for it. (This used to take an upstream at accept, before the handshake.)
func TestTLSListener(t *testing.T) {
	up := startServer(t, echo)
	cert, err := selfsigned.New("relay test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{Addr: up.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	l, err := New(ln, p, Config{HandshakeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	defer l.Close()

	// A TLS client gets the echo.
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: cert.Roots})
	if err != nil {
		t.Fatal(err)
	}
	got, err := exchange(c, "over tls\n")
	c.Close()
	if err != nil || got != "over tls\n" {
		t.Fatalf("TLS client: got %q, %v; want the echo", got, err)
	}

	// A plain client that never says hello is closed, and takes nothing.
	before := p.Stats()
	raw := dial(t, l.Addr().String())
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatalf("stalled client read %d bytes; want its conn closed", n)
	}
	waitFor(t, "the handshake failure to be counted", func() bool { return l.Stats().HandshakeFailures == 1 })
	after := p.Stats()
	if handed := (after.GetDial + after.GetSpare + after.GetReused) - (before.GetDial + before.GetSpare + before.GetReused); handed != 0 {
		t.Fatalf("upstreams handed out for a client stuck in its handshake: got %d; want 0", handed)
	}
}
