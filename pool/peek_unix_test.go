//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pool

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/selfsigned"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestPeek(t *testing.T) {
	c, s := tcpPair(t)
	pc := newPconn(nil, c, time.Now())
	// settle waits until the peek sees what s did (it saw nothing before).
	settle := func() {
		eventually(t, "the peer's bytes or FIN to land", func() bool { return pc.peek() != peekEmpty })
	}

	if got := pc.peek(); got != peekEmpty {
		t.Errorf("quiet conn: got %v; want empty", got)
	}
	io.WriteString(s, "x")
	settle()
	for range 2 { // a peek consumes nothing
		if got := pc.peek(); got != peekData {
			t.Errorf("pending byte: got %v; want data", got)
		}
	}
	c.Read(make([]byte, 1))
	if got := pc.peek(); got != peekEmpty {
		t.Errorf("after the read: got %v; want empty", got)
	}
	s.Close()
	settle()
	if got := pc.peek(); got != peekDead {
		t.Errorf("after the peer's FIN: got %v; want dead", got)
	}
	c.Close()
	if got := pc.peek(); got != peekDead {
		t.Errorf("closed conn: got %v; want dead", got)
	}

	notSocket, other := net.Pipe()
	defer other.Close()
	defer notSocket.Close()
	if got := newPconn(nil, notSocket, time.Now()).peek(); got != peekUnknown {
		t.Errorf("net.Pipe: got %v; want unknown", got)
	}
}

func TestPeekReset(t *testing.T) {
	c, s := tcpPair(t)
	pc := newPconn(nil, c, time.Now())
	s.(*net.TCPConn).SetLinger(0) // close with RST
	s.Close()
	eventually(t, "the RST to land", func() bool { return pc.peek() != peekEmpty })
	if got := pc.peek(); got != peekDead {
		t.Errorf("after the peer's RST: got %v; want dead", got)
	}
}

func BenchmarkPeek(b *testing.B) {
	c, _ := tcpPair(b)
	pc := newPconn(nil, c, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if pc.peek() != peekEmpty {
			b.Fatal("not empty")
		}
	}
}

// Over TLS the pool peeks the socket beneath the tls.Conn, and looks
// into the tls.Conn's own buffer, so used conns can be kept and stale
// ones are still caught wherever their bytes wait.
func TestTLSStaleBytes(t *testing.T) {
	t.Parallel()
	cert, err := selfsigned.New("pool test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{}, 1) // the second reply is on its way
	up := serveUpstream(t, ln, serveLines(func(c net.Conn, line string) string {
		switch line {
		case "one-record\n": // both replies in one TLS record
			return "one\ntwo\n"
		case "two-records\n": // the second one later, in a record of its own
			io.WriteString(c, "one\n")
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "two\n")
			sent <- struct{}{}
			return ""
		}
		return line
	}))

	dialer := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}}
	dial := func(ctx context.Context) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", up.Addr()) }
	p := newPool(t, Config{Dial: dial, MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})

	for _, cmd := range []string{"one-record", "two-records"} {
		l := mustGet(t, p)
		if _, ok := l.Conn().(*tls.Conn); !ok {
			t.Fatalf("got a %T; want the *tls.Conn itself", l.Conn())
		}
		roundTrip(t, l.Conn(), "x")
		if out := l.Release(clean); out != KeptUsed {
			t.Fatalf("Release: got %v; want kept-used", out)
		}
		l = mustGet(t, p)
		if l.Source() != SourceReused {
			t.Fatalf("got source %v; want reused", l.Source())
		}
		if got := roundTrip(t, l.Conn(), cmd); got != "one" {
			t.Fatalf("%s: got %q; want %q", cmd, got, "one")
		}
		if cmd == "two-records" {
			<-sent // written on loopback: in our socket's buffer now
		}
		if out := l.Release(clean); out != ClosedStale {
			t.Errorf("%s: Release with a reply pending: got %v; want closed-stale", cmd, out)
		}
	}
}
