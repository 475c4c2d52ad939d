package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/realserver"
)

// TestProxyProtocolTwoHops: client (from 127.0.0.7) -> HAProxy
// (send-proxy-v2) -> relay (-accept-proxy 127.0.0.1, -send-proxy v1 or
// v2) -> nginx (stream, listen ... proxy_protocol), which answers with
// the address its header carried: the client's own, through two hops.
func TestProxyProtocolTwoHops(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			noLeaks(t)
			ng := realserver.NginxStream(t, true, `return "$proxy_protocol_addr:$proxy_protocol_port\n";`)
			r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", ng.Addr,
				"-accept-proxy", "127.0.0.1/32", "-send-proxy", v, "-log-level", "debug")
			hp := realserver.HAProxy(t, r.addr+" send-proxy-v2")
			for range 3 {
				c, err := dialFrom("127.0.0.7", hp.Addr)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(waitFor))
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if want := c.LocalAddr().String() + "\n"; err != nil || line != want {
					t.Fatalf("nginx answered %q, %v; want %q; relay log:\n%s\nhaproxy:\n%s\nnginx:\n%s",
						line, err, want, r.stderr, hp.Output(), ng.Output())
				}
			}
			// The relay's own log names the client by the header too.
			r.waitLog(regexp.MustCompile(`msg="session ended" session=\d+ client=127\.0\.0\.7:`))
			r.mustStop()
		})
	}
}

// echoFirstLines is a Go upstream behind -send-proxy v1: it answers the
// PROXY line it gets from relay and the client's first line, as
// "src=<the header's source> data=<the line>".
func echoFirstLines(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(waitFor))
		br := bufio.NewReader(c)
		hdr, err := br.ReadString('\n')
		if err != nil {
			return
		}
		data, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(hdr) // PROXY TCP4 src dst sport dport
		if len(f) != 6 || f[0] != "PROXY" {
			fmt.Fprintf(c, "bad header %q\n", hdr)
			return
		}
		fmt.Fprintf(c, "src=%s data=%s\n", f[2], strings.TrimRight(data, "\r\n"))
		io.Copy(io.Discard, br)
	})
	return ln.Addr().String()
}

// TestForgedProxyHeaderUntrusted: with -accept-proxy 127.0.0.9, a client
// from 127.0.0.1 that sends a PROXY header naming 6.6.6.6 is a plain
// client (-accept-proxy-others plain): the upstream sees 127.0.0.1 in
// relay's header and the forged header as data. With refuse, it is
// closed unanswered.
func TestForgedProxyHeaderUntrusted(t *testing.T) {
	const forged = "PROXY TCP4 6.6.6.6 127.0.0.1 1111 2222"
	t.Run("plain", func(t *testing.T) {
		noLeaks(t)
		up := echoFirstLines(t)
		r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", up, "-accept-proxy", "127.0.0.9/32", "-send-proxy", "v1")
		got, err := roundTrip(t, r.addr, forged+"\r", nil)
		if want := "src=127.0.0.1 data=" + forged; err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
		r.mustStop()
	})
	t.Run("refuse", func(t *testing.T) {
		noLeaks(t)
		up := echoFirstLines(t)
		r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", up, "-accept-proxy", "127.0.0.9/32",
			"-accept-proxy-others", "refuse", "-send-proxy", "v1")
		if got, err := roundTrip(t, r.addr, forged+"\r", nil); err == nil {
			t.Fatalf("got %q; want the client closed", got)
		}
		r.waitLog(regexp.MustCompile(`msg="client closed" .*not in -accept-proxy`))
		r.mustStop()
	})
}

// v2Header is a PROXY v2 header for TCP over IPv4 from src.
func v2Header(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	b = append(b, src.Addr().AsSlice()...)
	b = append(b, dst.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// TestAcceptProxyTrusted: clients from a trusted address (127.0.0.1).
// A header and the first data in one write: the data reaches the demo
// upstream whole, and the log names the header's client; v1 and v2, and
// under -tls-cert (the header before the TLS handshake). A header whose
// source -deny names is refused. A missing header (plain data) or a
// garbage one closes the client with a handshake error.
func TestAcceptProxyTrusted(t *testing.T) {
	noLeaks(t)
	cert := newTestCert(t)
	plain := startProxy(t, "-listen", "127.0.0.1:0", "-accept-proxy", "127.0.0.1", "-deny", "192.0.2.66",
		"-log-level", "debug", "-metrics", "127.0.0.1:0")
	withTLS := startProxy(t, "-listen", "127.0.0.1:0", "-accept-proxy", "127.0.0.1", "-tls-cert", cert.certFile, "-tls-key", cert.keyFile,
		"-log-level", "debug")
	dst := netip.MustParseAddrPort("127.0.0.1:7070")

	send := func(r *proxyRun, first []byte, line string, useTLS bool) (string, error) {
		return roundTrip(t, r.addr, line, func(a string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", a, waitFor)
			if err != nil {
				return nil, err
			}
			if !useTLS {
				// Header and data in one write.
				first = append(first, line+"\n"...)
				if _, err := c.Write(first); err != nil {
					c.Close()
					return nil, err
				}
				return &skipFirstWrite{Conn: c}, nil
			}
			if _, err := c.Write(first); err != nil {
				c.Close()
				return nil, err
			}
			return tls.Client(c, &tls.Config{ServerName: "127.0.0.1", RootCAs: cert.pool}), nil
		})
	}

	for i, tc := range []struct {
		r      *proxyRun
		header []byte
		client string
		tls    bool
	}{
		{plain, []byte("PROXY TCP4 192.0.2.1 127.0.0.1 5551 7070\r\n"), "192.0.2.1:5551", false},
		{plain, v2Header(netip.MustParseAddrPort("192.0.2.2:5552"), dst), "192.0.2.2:5552", false},
		{plain, []byte("PROXY TCP6 2001:db8::3 ::1 5553 7070\r\n"), "[2001:db8::3]:5553", false},
		{withTLS, []byte("PROXY TCP4 192.0.2.4 127.0.0.1 5554 7070\r\n"), "192.0.2.4:5554", true},
		{withTLS, v2Header(netip.MustParseAddrPort("192.0.2.5:5555"), dst), "192.0.2.5:5555", true},
	} {
		line := fmt.Sprintf("hello %d", i)
		got, err := send(tc.r, tc.header, line, tc.tls)
		m := demoReplyRE.FindStringSubmatch(got)
		if err != nil || m == nil || m[2] != line {
			t.Fatalf("case %d: got %q, %v; want the demo's echo of %q; log:\n%s", i, got, err, line, tc.r.stderr)
		}
		tc.r.waitLog(regexp.MustCompile(`msg="session ended" session=\d+ client=` + regexp.QuoteMeta(tc.client) + ` `))
	}

	// Access rules see the header's address.
	if got, err := send(plain, []byte("PROXY TCP4 192.0.2.66 127.0.0.1 5566 7070\r\n"), "hi", false); err == nil {
		t.Fatalf("denied source: got %q; want closed", got)
	}
	wantMetric(t, scrape(t, plain), 1, "relay_refused_total", "reason", "denied")

	// No header, or a bad one: closed, as a handshake error.
	for _, bad := range []string{"GET / HTTP/1.0\r\n", "PROXY TCP4 nonsense\r\n", "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c0123456789ab"} {
		if got, err := send(plain, []byte(bad), "hi", false); err == nil {
			t.Errorf("header %q: got %q; want closed", bad, got)
		}
	}
	plain.waitLogN(regexp.MustCompile(`msg="client closed" session=\d+ client=127\.0\.0\.1:\d+ err="listener: client handshake: PROXY header: `), 4)
	plain.mustStop()
	withTLS.mustStop()
}

// skipFirstWrite drops the first Write (roundTrip's line, which the
// dial already sent with the header, so that both go in one write).
type skipFirstWrite struct {
	net.Conn
	done bool
}

func (c *skipFirstWrite) Write(p []byte) (int, error) {
	if !c.done {
		c.done = true
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestParseHeader: whole headers give their exact length (data after
// them is not counted), a header's beginning asks for more bytes, and
// anything else is an error.
func TestParseHeader(t *testing.T) {
	v2 := v2Header(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	v1 := "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"
	for _, tc := range []struct {
		in         string
		n, needMin int
		bad        bool
	}{
		{in: v1, n: len(v1)},
		{in: v1 + "GET / HTTP/1.1\r\n\r\n", n: len(v1)},
		{in: string(v2), n: len(v2)},
		{in: string(v2) + "data", n: len(v2)},
		{in: "", needMin: 1},
		{in: "PRO", needMin: 4},
		{in: "PROXY TCP4 192.0", needMin: 17},
		{in: "\r\n\r\n\x00", needMin: 16},
		{in: string(v2[:20]), needMin: len(v2)},
		{in: "GET / HTTP/1.1\r\n", bad: true},
		{in: "PROXY TCP4 x y 1 2\r\n", bad: true},
		{in: "PROXY " + strings.Repeat("1", 120), bad: true},
		{in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x02ab", bad: true}, // TCP4 with 2 bytes of address
	} {
		n, h, need, err := parseHeader([]byte(tc.in))
		switch {
		case tc.bad && err == nil:
			t.Errorf("%q: n %d need %d; want an error", tc.in, n, need)
		case tc.bad:
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.n > 0 && (n != tc.n || h == nil):
			t.Errorf("%q: n %d (header %v); want %d", tc.in, n, h, tc.n)
		case tc.needMin > 0 && (n != 0 || need < tc.needMin):
			t.Errorf("%q: n %d need %d; want more bytes, at least %d", tc.in, n, need, tc.needMin)
		}
	}
}

// TestAcceptProxySplitHeader: a trusted client whose header comes in
// pieces (separate writes, a pause between them) is served once the
// header is whole: the peek waits for more bytes rather than failing.
func TestAcceptProxySplitHeader(t *testing.T) {
	noLeaks(t)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-accept-proxy", "127.0.0.1", "-log-level", "debug")
	v2 := v2Header(netip.MustParseAddrPort("192.0.2.9:5559"), netip.MustParseAddrPort("127.0.0.1:7070"))
	for i, pieces := range [][]string{
		{"PROXY TCP4 192.0.2.8 ", "127.0.0.1 5558 7070\r", "\nhello 0\n"},
		{string(v2[:5]), string(v2[5:15]), string(v2[15:]) + "hello 1\n"},
	} {
		c, err := net.DialTimeout("tcp", r.addr, waitFor)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitFor))
		for _, p := range pieces {
			if _, err := io.WriteString(c, p); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // not an assertion: makes the relay likely to peek a part
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if m := demoReplyRE.FindStringSubmatch(strings.TrimSuffix(line, "\n")); err != nil || m == nil || m[2] != fmt.Sprintf("hello %d", i) {
			t.Fatalf("case %d: got %q, %v; log:\n%s", i, line, err, r.stderr)
		}
	}
	r.waitLog(regexp.MustCompile(`msg="session ended" session=\d+ client=192\.0\.2\.9:5559 `))
	r.mustStop()
}

// TestAcceptProxyWithRoutes: behind -accept-proxy, the ClientHello after
// the header is peeked and routed by its server name as without one.
func TestAcceptProxyWithRoutes(t *testing.T) {
	noLeaks(t)
	cert := newSNICert(t)
	a, b := namedTLSServer(t, "A", cert, false), namedTLSServer(t, "B", cert, false)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-route", "api.test="+a, "-upstream", b, "-accept-proxy", "127.0.0.1", "-log-level", "debug")
	for _, tc := range []struct{ name, want string }{{"api.test", "A"}, {"other.test", "B"}} {
		got, err := roundTrip(t, r.addr, "hi", func(addr string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, waitFor)
			if err != nil {
				return nil, err
			}
			if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.10 127.0.0.1 5510 443\r\n"); err != nil {
				c.Close()
				return nil, err
			}
			return tls.Client(c, &tls.Config{ServerName: tc.name, RootCAs: cert.Roots}), nil
		})
		if err != nil || got != tc.want {
			t.Fatalf("%s: got %q, %v; want %q; log:\n%s", tc.name, got, err, tc.want, r.stderr)
		}
	}
	r.waitLogN(regexp.MustCompile(`msg="session ended" session=\d+ client=192\.0\.2\.10:5510 `), 2)
	r.mustStop()
}
