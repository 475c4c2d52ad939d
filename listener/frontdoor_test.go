package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/selfsigned"
	"github.com/relaykit/relay/pool"
)

// namedTLS is a real TLS upstream that answers each line with its name.
func namedTLS(t *testing.T, name string, cert *selfsigned.Cert) *server {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, func(c net.Conn) {
		r := make([]byte, 1)
		for {
			if _, err := c.Read(r); err != nil {
				return
			}
			if r[0] == '\n' {
				io.WriteString(c, name+"\n")
			}
		}
	})
}

// newPool is a pool for a test, closed at its end.
func newPool(t *testing.T, cfg pool.Config) *pool.Pool {
	t.Helper()
	p, err := pool.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// serveListener runs l until the test ends.
func serveListener(tb testing.TB, l *ProxyListener) {
	tb.Helper()
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	tb.Cleanup(func() { l.Close(); <-done })
}

// newProxy starts a ProxyListener on loopback with def as its default,
// serving until the test ends.
func newProxy(tb testing.TB, def Upstream, cfg Config) *ProxyListener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l, err := New(ln, def, cfg)
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	serveListener(tb, l)
	return l
}

// TestRoutesByServerName: real TLS clients reach the upstream their
// server name routes to, exact before wildcard, without regard to case;
// no name, an unrouted name, or plain text goes to the default. TLS runs
// end to end (the client verifies the upstream's certificate), and no
// upstream conn that carried a peeked hello is reused.
func TestRoutesByServerName(t *testing.T) {
	cert, err := selfsigned.New("test", "api.example.com", "x.example.com", "a.b.example.com", "other.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ups := map[string]*pool.Pool{}
	for _, n := range []string{"api", "wild", "default"} {
		s := namedTLS(t, n, cert)
		ups[n] = newPool(t, pool.Config{Addr: s.Addr(), Spares: 1, Reuse: pool.ReuseIfClean, MaxIdle: 8})
	}
	l := newProxy(t, ups["default"], Config{Routes: []Route{
		{Names: []string{"api.example.com"}, Upstream: ups["api"]},
		{Names: []string{"*.example.com"}, Upstream: ups["wild"]},
	}})
	for _, tt := range []struct{ serverName, want string }{
		{"api.example.com", "api"},
		{"API.Example.COM", "api"},
		{"x.example.com", "wild"},
		{"a.b.example.com", "default"}, // a wildcard matches one label
		{"other.test", "default"},
		{"", "default"}, // no SNI (Go sends none for an IP)
	} {
		for range 2 {
			name := tt.serverName
			cfg := &tls.Config{RootCAs: cert.Roots, ServerName: name}
			if name == "" {
				cfg.ServerName = "127.0.0.1"
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cfg)
			if err != nil {
				t.Fatalf("%q: %v", name, err)
			}
			got, err := exchange(c, "hi\n")
			c.Close()
			if err != nil || got != tt.want+"\n" {
				t.Errorf("server name %q: got %q, %v; want %q", name, got, err, tt.want)
			}
		}
	}
	for n, p := range ups {
		if st := p.Stats(); st.GetReused != 0 {
			t.Errorf("upstream %s: %d reused hand-outs; a conn that carried a replayed hello must not be reused", n, st.GetReused)
		}
	}
}

// recordingServer is a raw upstream that keeps what each conn sent
// before its first newline-terminated line and answers with name.
type recordingServer struct {
	*server
	mu   sync.Mutex
	seen [][]byte
}

func startRecording(t *testing.T, name string, want int) *recordingServer {
	rs := &recordingServer{}
	rs.server = startServer(t, func(c net.Conn) {
		buf := make([]byte, want)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		rs.mu.Lock()
		rs.seen = append(rs.seen, buf)
		rs.mu.Unlock()
		io.WriteString(c, name+"\n")
		io.Copy(io.Discard, c)
	})
	return rs
}

func (rs *recordingServer) last() []byte {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.seen) == 0 {
		return nil
	}
	return rs.seen[len(rs.seen)-1]
}

// clientHello returns the bytes of a real ClientHello for serverName.
func clientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// splitRecords re-frames a one-record ClientHello as records of at most
// n bytes of handshake data each.
func splitRecords(hello []byte, n int) []byte {
	var out []byte
	body := hello[5:]
	for len(body) > 0 {
		k := min(n, len(body))
		out = append(out, 0x16, hello[1], hello[2], byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	return out
}

// TestRouteTinySegments: a ClientHello split into 3-byte TCP segments,
// and into 40-byte TLS records, is routed by its name, and the upstream
// receives every byte of it, in order.
func TestRouteTinySegments(t *testing.T) {
	hello := clientHello(t, "api.example.com")
	for _, tt := range []struct {
		name  string
		bytes []byte
	}{
		{"one record", hello},
		{"40-byte records", splitRecords(hello, 40)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := startRecording(t, "api", len(tt.bytes))
			def := startRecording(t, "default", len(tt.bytes))
			l := newProxy(t, newPool(t, pool.Config{Addr: def.Addr()}), Config{Routes: []Route{
				{Names: []string{"api.example.com"}, Upstream: newPool(t, pool.Config{Addr: api.Addr()})},
			}})
			c := dial(t, l.Addr().String())
			for b := tt.bytes; len(b) > 0; {
				k := min(3, len(b))
				if _, err := c.Write(b[:k]); err != nil {
					t.Fatal(err)
				}
				b = b[k:]
			}
			got, err := readLine(c)
			if err != nil || got != "api\n" {
				t.Fatalf("got %q, %v; want api", got, err)
			}
			if !bytes.Equal(api.last(), tt.bytes) {
				t.Errorf("the upstream got %d bytes differing from the %d sent", len(api.last()), len(tt.bytes))
			}
		})
	}
}

func readLine(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		b = append(b, one[0])
		if one[0] == '\n' {
			return string(b), nil
		}
	}
}

// TestRoutePeekTimeout: a client that sends nothing goes, after
// PeekTimeout, to the default (where a server that speaks first greets
// it); with no default it is closed and counted. A client that sent half
// a ClientHello and stalls is closed.
func TestRoutePeekTimeout(t *testing.T) {
	greeter := startServer(t, func(c net.Conn) { io.WriteString(c, "greetings\n"); io.Copy(io.Discard, c) })
	other := newPool(t, pool.Config{Addr: greeter.Addr()})
	routes := []Route{{Names: []string{"a.test"}, Upstream: other}}

	l := newProxy(t, newPool(t, pool.Config{Addr: greeter.Addr()}), Config{Routes: routes, PeekTimeout: 50 * time.Millisecond})
	c := dial(t, l.Addr().String())
	if got, err := readLine(c); err != nil || got != "greetings\n" {
		t.Errorf("silent client with a default: got %q, %v; want the greeting", got, err)
	}

	noDef := newProxy(t, nil, Config{Routes: routes, PeekTimeout: 50 * time.Millisecond})
	c = dial(t, noDef.Addr().String())
	if got, err := readLine(c); err == nil {
		t.Errorf("silent client without a default: got %q; want it closed", got)
	}
	waitFor(t, "the refusal counted", func() bool { return noDef.Stats().Refused[RefusedNoRoute] == 1 })

	c = dial(t, noDef.Addr().String())
	hello := clientHello(t, "a.test")
	c.Write(hello[:len(hello)/2])
	if got, err := readLine(c); err == nil {
		t.Errorf("half a hello: got %q; want the client closed", got)
	}
	waitFor(t, "the peek failure counted", func() bool { return noDef.Stats().PeekFailures == 1 })
}

// TestRoutesValidate: bad routes fail New with the field named.
func TestRoutesValidate(t *testing.T) {
	p := newPool(t, pool.Config{Addr: "127.0.0.1:1"})
	for _, tt := range []struct {
		routes []Route
		want   string
	}{
		{[]Route{{Names: []string{"a.test"}}}, "Routes[0].Upstream"},
		{[]Route{{Upstream: p}}, "Routes[0].Names"},
		{[]Route{{Names: []string{"a..test"}, Upstream: p}}, "Routes[0].Names"},
		{[]Route{{Names: []string{"*"}, Upstream: p}}, "Routes[0].Names"},
		{[]Route{{Names: []string{"a.test"}, Upstream: p}, {Names: []string{"A.test"}, Upstream: p}}, "routed twice"},
	} {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		_, err := New(ln, p, Config{Routes: tt.routes})
		ln.Close()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("routes %+v: got %v; want an error naming %q", tt.routes, err, tt.want)
		}
	}
}

// TestRouteLookup: exact names, one-label wildcards, case and a trailing
// dot.
func TestRouteLookup(t *testing.T) {
	a, b := &pool.Pool{}, &pool.Pool{}
	rt, err := newRoutes([]Route{
		{Names: []string{"Exact.Test"}, Upstream: a},
		{Names: []string{"*.wild.test"}, Upstream: b},
	}, func(up Upstream) (*target, error) { return &target{up: up}, nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want Upstream
	}{
		{"exact.test", a}, {"EXACT.TEST.", a}, {"x.exact.test", nil},
		{"a.wild.test", b}, {"A.WILD.test", b}, {"wild.test", nil}, {"a.b.wild.test", nil}, {"", nil},
	} {
		got := rt.lookup(tt.name)
		if (got == nil) != (tt.want == nil) || (got != nil && got.up != tt.want) {
			t.Errorf("lookup(%q): got %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestAccess: deny wins over allow; a client outside Allow is closed
// before any upstream is taken, and counted.
func TestAccess(t *testing.T) {
	up := startServer(t, echo)
	p := newPool(t, pool.Config{Addr: up.Addr()})
	l := newProxy(t, p, Config{Access: Access{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")},
	}})
	for _, tt := range []struct {
		from string
		ok   bool
	}{{"127.0.0.1", true}, {"127.0.0.3", false}, {"127.0.1.1", false}} {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := exchange(c, "ping\n")
		c.Close()
		if ok := err == nil && got == "ping\n"; ok != tt.ok {
			t.Errorf("from %s: got %q, %v; want served %v", tt.from, got, err, tt.ok)
		}
	}
	if st := l.Stats(); st.Refused[RefusedDenied] != 2 || st.Pool.GetDial+st.Pool.GetSpare != 1 {
		t.Errorf("stats: %d denied, %d upstream hand-outs; want 2 and 1", st.Refused[RefusedDenied], st.Pool.GetDial+st.Pool.GetSpare)
	}
}

// TestMaxSessionsPerIP: under a burst of 20 connections from one
// address, exactly the cap are served; the rest are closed and counted;
// another address is not affected; a slot freed is taken again.
func TestMaxSessionsPerIP(t *testing.T) {
	up := startServer(t, echo)
	l := newProxy(t, newPool(t, pool.Config{Addr: up.Addr(), Spares: 4}), Config{MaxSessionsPerIP: 3})
	var (
		mu     sync.Mutex
		served []net.Conn
		wg     sync.WaitGroup
	)
	refused := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := exchange(c, "x\n"); err != nil {
				c.Close()
				mu.Lock()
				refused++
				mu.Unlock()
				return
			}
			mu.Lock()
			served = append(served, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(served) != 3 || refused != 17 {
		t.Fatalf("burst of 20: %d served, %d refused; want 3 and 17", len(served), refused)
	}
	if n := l.Stats().Refused[RefusedPerIP]; n != 17 {
		t.Errorf("counted %d per-IP refusals; want 17", n)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := exchange(other, "y\n"); err != nil {
		t.Errorf("another address: %v; want served", err)
	}
	served[0].Close()
	waitFor(t, "a slot freed", func() bool { return len(l.Sessions()) == 3 })
	again := dial(t, l.Addr().String())
	if _, err := exchange(again, "z\n"); err != nil {
		t.Errorf("after a slot freed: %v; want served", err)
	}
	for _, c := range served[1:] {
		c.Close()
	}
}

// TestSendProxy: each upstream conn starts with the client's PROXY
// header (v1 text, v2 binary) and is not reused; New refuses SendProxy
// with a reusing pool.
func TestSendProxy(t *testing.T) {
	for _, v := range []ProxyHeader{ProxyV1, ProxyV2} {
		t.Run(v.String(), func(t *testing.T) {
			want := func(client, proxy net.Addr) []byte {
				c, p := client.(*net.TCPAddr), proxy.(*net.TCPAddr)
				if v == ProxyV1 {
					return fmt.Appendf(nil, "PROXY TCP4 %s %s %d %d\r\n", c.IP, p.IP, c.Port, p.Port)
				}
				b := append([]byte{}, proxyV2Sig[:]...)
				b = append(b, 0x21, 0x11, 0, 12)
				b = append(b, c.IP.To4()...)
				b = append(b, p.IP.To4()...)
				b = binary.BigEndian.AppendUint16(b, uint16(c.Port))
				return binary.BigEndian.AppendUint16(b, uint16(p.Port))
			}
			n := len(want(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 65535}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 65535}))
			got := make(chan []byte, 4)
			up := startServer(t, func(c net.Conn) {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 0, 128)
				one := make([]byte, 1)
				for len(buf) < n+len("hello\n") {
					k, err := c.Read(one)
					if err != nil {
						break
					}
					buf = append(buf, one[:k]...)
					if v == ProxyV1 && bytes.HasSuffix(buf, []byte("hello\n")) {
						break
					}
				}
				got <- buf
				io.WriteString(c, "ok\n")
				io.Copy(io.Discard, c)
			})
			p := newPool(t, pool.Config{Addr: up.Addr(), Spares: 2})
			l := newProxy(t, p, Config{SendProxy: v})
			for range 2 {
				c := dial(t, l.Addr().String())
				if reply, err := exchange(c, "hello\n"); err != nil || reply != "ok\n" {
					t.Fatalf("got %q, %v", reply, err)
				}
				w := append(want(c.LocalAddr(), c.RemoteAddr()), "hello\n"...)
				if b := <-got; !bytes.Equal(b, w) {
					t.Errorf("the upstream got %q; want %q", b, w)
				}
				c.Close()
			}
			waitFor(t, "both upstream conns closed, not kept", func() bool {
				return p.Stats().Closed[pool.ClosedNotClean] == 2
			})
		})
	}
	reusing := newPool(t, pool.Config{Addr: "127.0.0.1:1", Reuse: pool.ReuseIfClean, MaxIdle: 1})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	if _, err := New(ln, reusing, Config{SendProxy: ProxyV2}); err == nil || !strings.Contains(err.Error(), "SendProxy") {
		t.Errorf("SendProxy with a reusing pool: got %v; want an error naming SendProxy", err)
	}
}

// TestProxyHeaderForms: IPv6 and unknown addresses.
func TestProxyHeaderForms(t *testing.T) {
	c6 := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 4000}
	p6 := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 80}
	if got, want := string(appendProxyHeader(nil, ProxyV1, c6, p6)), "PROXY TCP6 ::1 ::1 4000 80\r\n"; got != want {
		t.Errorf("v1 IPv6: got %q; want %q", got, want)
	}
	u := &net.UnixAddr{Name: "/tmp/x", Net: "unix"}
	if got := string(appendProxyHeader(nil, ProxyV1, u, u)); got != "PROXY UNKNOWN\r\n" {
		t.Errorf("v1 unix: got %q", got)
	}
	if got := appendProxyHeader(nil, ProxyV2, u, u); !bytes.Equal(got[12:], []byte{0x20, 0, 0, 0}) {
		t.Errorf("v2 unix: got % x; want the LOCAL command", got)
	}
	if got := appendProxyHeader(nil, ProxyV2, c6, p6); len(got) != 16+36 || got[13] != 0x21 {
		t.Errorf("v2 IPv6: got % x", got)
	}
	zoned := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 4000, Zone: "lo"}
	if got, want := string(appendProxyHeader(nil, ProxyV1, zoned, p6)), "PROXY TCP6 fe80::1 ::1 4000 80\r\n"; got != want {
		t.Errorf("v1 with a zone: got %q; want %q", got, want)
	}
	mapped := &net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 1}
	if got := string(appendProxyHeader(nil, ProxyV1, mapped, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2})); got != "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n" {
		t.Errorf("v1 IPv4-mapped: got %q", got)
	}
}

// TestPeekedNotReused: with Routes, a plain-text client's first byte is
// peeked and replayed outside the copy. A client whose whole request is
// that byte, and who leaves before the reply, must not leave the reply to
// the next client: the copy saw no byte, so the conn would pass as
// untouched and go back as a spare (the reply comes after the copy's
// drain has given up on it). A conn that carried a replay is closed
// instead, even under a reusing policy.
func TestPeekedNotReused(t *testing.T) {
	slow := startServer(t, func(c net.Conn) {
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			// Later than the copy's drain after the client's FIN (50ms).
			time.Sleep(150 * time.Millisecond)
			fmt.Fprintf(c, "reply to %s\n", b)
		}
	})
	p := newPool(t, pool.Config{Addr: slow.Addr(), Spares: 1, Reuse: pool.ReuseIfClean, MaxIdle: 4, QuietPeriod: -1})
	l := newProxy(t, p, Config{Routes: []Route{{Names: []string{"a.test"}, Upstream: newPool(t, pool.Config{Addr: "127.0.0.1:1"})}}})
	for i := range 3 {
		c := dial(t, l.Addr().String())
		c.Write([]byte("?"))
		c.Close()
		waitFor(t, "the session over", func() bool { return len(l.Sessions()) == 0 })
		c = dial(t, l.Addr().String())
		c.Write([]byte("!"))
		got, err := readLine(c)
		c.Close()
		if err != nil || got != "reply to !\n" {
			t.Fatalf("round %d: got %q, %v; want the reply to this client's request", i, got, err)
		}
	}
}

// TestPrepare: Prepare reads what precedes the client's stream (here a
// 4-byte tag) before anything else; the upstream gets only the rest, and
// the copy still runs between the raw sockets. A failing Prepare closes
// the client as a HandshakeError.
func TestPrepare(t *testing.T) {
	up := startServer(t, echo)
	ended := make(chan SessionInfo, 4)
	l := newProxy(t, newPool(t, pool.Config{Addr: up.Addr()}), Config{
		Prepare: func(ctx context.Context, c net.Conn) error {
			tag := make([]byte, 4)
			if _, err := io.ReadFull(c, tag); err != nil {
				return err
			}
			if string(tag) != "TAG\n" {
				return fmt.Errorf("bad tag %q", tag)
			}
			return nil
		},
		OnSessionEnd: func(i SessionInfo) { ended <- i },
	})
	c := dial(t, l.Addr().String())
	if got, err := exchange(c, "TAG\nhello\n"); err != nil || got != "hello\n" {
		t.Fatalf("got %q, %v; want hello", got, err)
	}
	c.Close()
	if info := waitEnded(t, ended); info.Err != nil || (runtime.GOOS == "linux" && !info.Result.Up.Spliced) {
		t.Errorf("session: err %v, spliced %v; want no error, spliced on Linux", info.Err, info.Result.Up.Spliced)
	}
	c = dial(t, l.Addr().String())
	if got, err := exchange(c, "BAD!hello\n"); err == nil {
		t.Errorf("bad tag: got %q; want the client closed", got)
	}
	var he *HandshakeError
	if info := waitEnded(t, ended); !errors.As(info.Err, &he) {
		t.Errorf("bad tag: err %v; want a *HandshakeError", info.Err)
	}
}

// TestPeekCutByClose: Close does not wait for a silent client's peek to
// time out.
func TestPeekCutByClose(t *testing.T) {
	up := startServer(t, echo)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, pool.Config{Addr: up.Addr()})
	l, err := New(ln, p, Config{Routes: []Route{{Names: []string{"a.test"}, Upstream: p}}, PeekTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	serveListener(t, l) // closes l if the test fails before it does
	c := dial(t, l.Addr().String())
	waitFor(t, "the session to peek", func() bool {
		s := l.Sessions()
		return len(s) == 1 && s[0].Phase == PhasePeek
	})
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a peek with an hour's timeout")
	}
	if got, err := readLine(c); err == nil {
		t.Errorf("client after Close: got %q; want it closed", got)
	}
}

// TestRouteName: names come back as routes compare them; bad ones are
// errors that quote them.
func TestRouteName(t *testing.T) {
	for in, want := range map[string]string{"API.Example.com.": "api.example.com", "*.Example.COM": "*.example.com", "a_b-1.test": "a_b-1.test"} {
		if got, err := RouteName(in); err != nil || got != want {
			t.Errorf("RouteName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "*", "*.", "a..b", "a.*.b", "a b", "**.a", strings.Repeat("a", 64) + ".test"} {
		if _, err := RouteName(in); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("RouteName(%q): got %v; want an error quoting it", in, err)
		}
	}
}
