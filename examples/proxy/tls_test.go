package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/loopback"
)

// TestRunTLSTermination runs the proxy with -tls-cert/-tls-key in front
// of the (plain) demo upstream, and checks that a TLS client gets the
// echo and a plain client does not.
func TestRunTLSTermination(t *testing.T) {
	noLeaks(t)
	cert := newTestCert(t)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-tls-cert", cert.certFile, "-tls-key", cert.keyFile)
	if line := r.waitLog(regexp.MustCompile(`msg="relay listening".*`))[0]; !strings.Contains(line, "tls=true") {
		t.Errorf("listening line: got %q; want tls=true", line)
	}

	dialTLS := func(addr string) (net.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: waitFor}, Config: &tls.Config{RootCAs: cert.pool, ServerName: "127.0.0.1"}}
		return d.Dial("tcp", addr)
	}
	reply, err := roundTrip(t, r.addr, "secret", dialTLS)
	if err != nil {
		t.Fatalf("TLS session: %v; log:\n%s", err, r.stderr)
	}
	if m := demoReplyRE.FindStringSubmatch(reply); m == nil || m[2] != "secret" {
		t.Errorf("TLS reply: got %q; want \"upstream conn #N: secret\"", reply)
	}

	// A plain client speaks no TLS: it must not get an echo.
	if reply, err := roundTrip(t, r.addr, "plain", nil); err == nil && strings.Contains(reply, "plain") {
		t.Errorf("plain client to a TLS listener: got echo %q; want none", reply)
	}
	r.mustStop()
}

// tlsEcho is a TLS line-echo upstream for the tests: "tls: <line>".
type tlsEcho struct {
	*loopback.Server
	resumed atomic.Int32 // handshakes that resumed a session

	mu     sync.Mutex
	curves []tls.CurveID // key-exchange group of each handshake, in order
}

// negotiated returns the key-exchange groups of the handshakes so far.
func (e *tlsEcho) negotiated() []tls.CurveID {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.curves)
}

func startTLSEcho(t *testing.T, cert testCert) *tlsEcho {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert.certFile, cert.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	e := &tlsEcho{}
	e.Server = loopback.Serve(t, ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			return
		}
		state := tc.ConnectionState()
		if state.DidResume {
			e.resumed.Add(1)
		}
		e.mu.Lock()
		e.curves = append(e.curves, state.CurveID)
		e.mu.Unlock()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := c.Write([]byte("tls: " + line)); err != nil {
				return
			}
		}
	})
	return e
}

// TestRunUpstreamTLS checks the upstream TLS flags against a TLS echo
// server: the CA from -upstream-tls-ca is what makes the handshake pass,
// the server name defaults to the host of -upstream, and
// -upstream-tls-server-name overrides it. Redials resume the TLS session.
func TestRunUpstreamTLS(t *testing.T) {
	ipCert := newTestCert(t)                 // for 127.0.0.1
	nameCert := newTestCert(t, "relay.test") // for relay.test only
	tests := []struct {
		name   string
		cert   testCert
		flags  []string
		wantOK bool
		resume bool // check that a later dial resumed the session
	}{
		{"ca", ipCert, []string{"-upstream-tls-ca", ipCert.certFile}, true, true},
		{"server name", nameCert, []string{"-upstream-tls-ca", nameCert.certFile, "-upstream-tls-server-name", "relay.test"}, true, false},
		{"insecure", nameCert, []string{"-upstream-tls-insecure"}, true, false},
		{"system roots do not know the test CA", ipCert, nil, false, false},
		{"default server name is the host, not in the cert", nameCert, []string{"-upstream-tls-ca", nameCert.certFile}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			up := startTLSEcho(t, tt.cert)
			args := append([]string{"-listen", "127.0.0.1:0", "-upstream", up.Addr(), "-upstream-tls",
				"-spares", "1", "-get-timeout", "2s", "-dial-timeout", "2s"}, tt.flags...)
			r := startProxy(t, args...)
			reply, err := roundTrip(t, r.addr, "hello", nil)
			switch {
			case tt.wantOK && (err != nil || reply != "tls: hello"):
				t.Errorf("session: got %q, %v; want \"tls: hello\"; log:\n%s", reply, err, r.stderr)
			case !tt.wantOK && err == nil:
				t.Errorf("session: got %q; want the client closed (handshake must fail)", reply)
			case !tt.wantOK:
				r.waitLog(regexp.MustCompile(`msg="client closed".*get upstream.*(certificate|x509)`))
			}
			if tt.resume {
				// The first session read the server's session ticket; the
				// spare dialed when the second session takes its conn comes
				// after that, and resumes.
				if reply, err := roundTrip(t, r.addr, "again", nil); err != nil || reply != "tls: again" {
					t.Fatalf("second session: got %q, %v; want \"tls: again\"", reply, err)
				}
				deadline := time.Now().Add(waitFor)
				for up.resumed.Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if up.resumed.Load() == 0 {
					t.Errorf("no upstream TLS handshake resumed a session; want the client session cache used; log:\n%s", r.stderr)
				}
			}
			r.mustStop()
			up.Close()
		})
	}
}

// TestRunUpstreamTLSCurves checks that -upstream-tls-curves decides the
// key-exchange group the upstream handshakes negotiate: Go's default
// (post-quantum X25519MLKEM768) without it, the one group listed with
// one, and with two, the one crypto/tls prefers, whatever the order.
func TestRunUpstreamTLSCurves(t *testing.T) {
	cert := newTestCert(t)
	tests := []struct {
		name  string
		flags []string
		want  tls.CurveID
	}{
		{"default", nil, tls.X25519MLKEM768},
		{"X25519", []string{"-upstream-tls-curves", "X25519"}, tls.X25519},
		{"P-384", []string{"-upstream-tls-curves", "p-384"}, tls.CurveP384},
		{"order is Go's", []string{"-upstream-tls-curves", "P384,X25519"}, tls.X25519},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			up := startTLSEcho(t, cert)
			args := append([]string{"-listen", "127.0.0.1:0", "-upstream", up.Addr(), "-upstream-tls",
				"-upstream-tls-ca", cert.certFile, "-spares", "1"}, tt.flags...)
			r := startProxy(t, args...)
			// The echo records the group before it reads, so a reply means
			// the handshake of the conn that served it is recorded.
			if reply, err := roundTrip(t, r.addr, "hello", nil); err != nil || reply != "tls: hello" {
				t.Fatalf("session: got %q, %v; want \"tls: hello\"; log:\n%s", reply, err, r.stderr)
			}
			got := up.negotiated()
			if len(got) == 0 {
				t.Fatal("upstream recorded no handshake; want at least the one that served the session")
			}
			for i, id := range got {
				if id != tt.want {
					t.Errorf("upstream handshake %d negotiated %v; want %v (all: %v)", i+1, id, tt.want, got)
				}
			}
			r.mustStop()
			up.Close()
		})
	}
}
