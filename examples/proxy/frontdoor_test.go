package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/realserver"
	"github.com/relaykit/relay/internal/selfsigned"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// TestParseFrontDoorFlags: every front door flag, good and bad values,
// from the command line; errors name the flag.
func TestParseFrontDoorFlags(t *testing.T) {
	cert := newTestCert(t)
	good := []struct {
		name string
		args []string
		want func(*config) bool
	}{
		{"two routes", []string{"-route", "api.test=10.0.0.1:443", "-route", "*.b.test,C.test.=10.0.0.2:443@2,10.0.0.3:443", "-upstream", "10.0.0.9:443"},
			func(c *config) bool {
				return formatRoutes(c.routes) == "api.test=10.0.0.1:443;*.b.test,c.test=10.0.0.2:443@2,10.0.0.3:443" &&
					formatServers(c.upstreams) == "10.0.0.9:443"
			}},
		{"routes in one value", []string{"-route", "a.test=h:1; b.test=h:2"},
			func(c *config) bool {
				return len(c.routes) == 2 && c.routes[1].key() == "b.test" && len(c.upstreams) == 0
			}},
		{"peek timeout", []string{"-route", "a.test=h:1", "-peek-timeout", "2s"},
			func(c *config) bool {
				return c.peekTimeout == 2*time.Second && c.listenerConfig(nil).PeekTimeout == 2*time.Second
			}},
		{"allow deny", []string{"-allow", "10.0.0.0/8, 192.0.2.1,::1", "-deny", "10.1.2.3/16"},
			func(c *config) bool {
				a := c.listenerConfig(nil).Access
				return (prefixesValue{&c.allow}).String() == "10.0.0.0/8,192.0.2.1/32,::1/128" &&
					(prefixesValue{&c.deny}).String() == "10.1.0.0/16" &&
					a.Permits(netip.MustParseAddr("10.9.9.9")) && !a.Permits(netip.MustParseAddr("10.1.9.9")) &&
					!a.Permits(netip.MustParseAddr("192.0.2.2"))
			}},
		{"mapped prefix", []string{"-deny", "::ffff:10.0.0.0/104"},
			func(c *config) bool { return (prefixesValue{&c.deny}).String() == "10.0.0.0/8" }},
		{"per ip", []string{"-max-sessions-per-ip", "3"}, func(c *config) bool { return c.listenerConfig(nil).MaxSessionsPerIP == 3 }},
		{"send proxy v1", []string{"-send-proxy", "v1"}, func(c *config) bool { return c.listenerConfig(nil).SendProxy == listener.ProxyV1 }},
		{"send proxy v2, redis, reuse never", []string{"-send-proxy", "v2", "-protocol", "redis", "-reuse", "never", "-upstream", "h:1"},
			func(c *config) bool { return c.sendProxy == listener.ProxyV2 && c.reuse == pool.ReuseNever }},
		{"send proxy empty", []string{"-send-proxy", ""}, func(c *config) bool { return c.sendProxy == listener.ProxyNone }},
		{"accept proxy", []string{"-accept-proxy", "127.0.0.1,10.0.0.0/8", "-accept-proxy-others", "refuse"},
			func(c *config) bool {
				return len(c.acceptProxy) == 2 && c.acceptProxy[0].Bits() == 32 && c.refuseOthers
			}},
		{"accept proxy plain default", []string{"-accept-proxy", "::1"},
			func(c *config) bool { return c.acceptProxy[0].Bits() == 128 && !c.refuseOthers }},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			if !acceptProxySupported && strings.HasPrefix(tc.name, "accept proxy") {
				t.Skip("-accept-proxy is not supported here")
			}
			cfg, err := parseConfig(tc.args, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tc.args, err)
			}
			if !tc.want(cfg) {
				t.Errorf("parseConfig(%q): got %+v", tc.args, cfg)
			}
		})
	}

	bad := []struct {
		args  []string
		wants []string // each in the error
	}{
		{[]string{"-route", "api.test"}, []string{"-route", "want NAME"}},
		{[]string{"-route", "a b.test=h:1"}, []string{"-route", "not a host name"}},
		{[]string{"-route", "*=h:1"}, []string{"-route", "not a host name"}},
		{[]string{"-route", "a.*.test=h:1"}, []string{"-route"}},
		{[]string{"-route", "a.test="}, []string{"-route", "no upstream"}},
		{[]string{"-route", "a.test=h"}, []string{"-route", "host:port"}},
		{[]string{"-route", "a.test=h:1;"}, []string{"-route", "empty route"}},
		{[]string{"-route", "a.test=h:1", "-route", "A.test=h:2"}, []string{"-route", "routed twice"}},
		{[]string{"-route", "default=h:1"}, []string{"-route", "-upstream's"}},
		{[]string{"-route", "a.test=h:1", "-upstream-tls"}, []string{"-upstream-tls", "needs -upstream"}},
		{[]string{"-route", "a.test=h:1", "-tls-cert", cert.certFile, "-tls-key", cert.keyFile}, []string{"-route", "-tls-cert"}},
		{[]string{"-peek-timeout", "1s"}, []string{"-peek-timeout", "-route"}},
		{[]string{"-route", "a.test=h:1", "-peek-timeout", "-1s"}, []string{"-peek-timeout"}},
		{[]string{"-allow", "10.0.0.0/33"}, []string{"-allow", "CIDR"}},
		{[]string{"-allow", "10.0.0.1,"}, []string{"-allow", "empty element"}},
		{[]string{"-deny", "nope"}, []string{"-deny"}},
		{[]string{"-max-sessions-per-ip", "-1"}, []string{"-max-sessions-per-ip"}},
		{[]string{"-max-sessions-per-ip", "x"}, []string{"-max-sessions-per-ip"}},
		{[]string{"-send-proxy", "v3"}, []string{"-send-proxy", "v1 or v2"}},
		{[]string{"-send-proxy", "v1", "-reuse", "clean"}, []string{"-send-proxy", "-reuse clean"}},
		{[]string{"-send-proxy", "v2", "-protocol", "redis", "-upstream", "h:1"}, []string{"-send-proxy", "-reuse verified", "-protocol redis"}},
		{[]string{"-send-proxy", "v2", "-fence-send", "x", "-fence-expect", "y", "-upstream", "h:1"}, []string{"-send-proxy", "-reuse verified"}},
		{[]string{"-accept-proxy", "localhost"}, []string{"-accept-proxy"}},
		{[]string{"-accept-proxy-others", "refuse"}, []string{"-accept-proxy-others", "needs -accept-proxy"}},
		{[]string{"-accept-proxy", "127.0.0.1", "-accept-proxy-others", "maybe"}, []string{"-accept-proxy-others", "plain or refuse"}},
	}
	for _, tc := range bad {
		_, err := parseConfig(tc.args, io.Discard)
		if err == nil {
			t.Errorf("parseConfig(%q): no error", tc.args)
			continue
		}
		if _, ok := err.(*usageError); !ok {
			t.Errorf("parseConfig(%q): %T %v; want a *usageError", tc.args, err, err)
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("parseConfig(%q): %q lacks %q", tc.args, err, w)
			}
		}
	}
}

// TestRouteSources: -route from RELAY_ROUTE (';' between routes) and from
// -config "route" lines (one per route, appended); the command line's
// routes replace both, as for every flag.
func TestRouteSources(t *testing.T) {
	file := writeFile(t, "relay.conf", "route a.test=h:1\nroute b.test,*.c.test=h:2@3\n")
	cfg, err := parseConfig([]string{"-config", file}, io.Discard)
	if err != nil || formatRoutes(cfg.routes) != "a.test=h:1;b.test,*.c.test=h:2@3" {
		t.Fatalf("from the file: %v, %+v", err, cfg)
	}
	t.Setenv("RELAY_ROUTE", "x.test=h:3;y.test=h:4")
	cfg, err = parseConfig([]string{"-config", file}, io.Discard)
	if err != nil || formatRoutes(cfg.routes) != "x.test=h:3;y.test=h:4" {
		t.Fatalf("from the environment: %v, %+v", err, cfg)
	}
	cfg, err = parseConfig([]string{"-config", file, "-route", "z.test=h:5"}, io.Discard)
	if err != nil || formatRoutes(cfg.routes) != "z.test=h:5" {
		t.Fatalf("from the command line: %v, %+v", err, cfg)
	}
	bad := writeFile(t, "bad.conf", "route a.test=h:1\nroute a.test=h:2\n")
	os.Unsetenv("RELAY_ROUTE")
	if _, err := parseConfig([]string{"-config", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), `"route"`) {
		t.Fatalf("a name routed twice in the file: %v", err)
	}
}

// namedTLSServer is a crypto/tls upstream that answers one line with its
// name, then waits for the client's end, or with closeAfter closes.
func namedTLSServer(t *testing.T, name string, cert *selfsigned.Cert, closeAfter bool) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(waitFor))
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err == nil {
			io.WriteString(c, name+"\n")
		}
		if !closeAfter {
			io.Copy(io.Discard, br)
		}
	})
	return ln.Addr().String()
}

// serveConns runs handle for each conn of ln, each on its own goroutine,
// until the test ends; cleanup closes ln and waits for the handlers.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// tlsDial returns a dial for roundTrip: TLS with server name name,
// verified against roots.
func tlsDial(name string, cert *selfsigned.Cert) func(string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: waitFor}
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: cert.Roots})
	}
}

func newSNICert(t *testing.T) *selfsigned.Cert {
	t.Helper()
	cert, err := selfsigned.New("relay test", "api.test", "other.test")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestSNIRouting: behind -route api.test=A -upstream B, a crypto/tls
// client asking for api.test reaches A and one asking for other.test
// reaches B, TLS end to end (verified against the upstreams' certificate).
func TestSNIRouting(t *testing.T) {
	noLeaks(t)
	cert := newSNICert(t)
	a, b := namedTLSServer(t, "A", cert, false), namedTLSServer(t, "B", cert, false)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-route", "api.test="+a, "-upstream", b)
	for _, tc := range []struct{ name, want string }{{"api.test", "A"}, {"API.test", "A"}, {"other.test", "B"}} {
		got, err := roundTrip(t, r.addr, "hello", tlsDial(tc.name, cert))
		if err != nil || got != tc.want {
			t.Errorf("server name %s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if !strings.Contains(r.stderr.String(), `routes="api.test=`+a+`"`) {
		t.Errorf("the listening line lacks the routes; log:\n%s", r.stderr)
	}
	r.mustStop()
}

// TestSNIRoutingNoDefault: with -route and no -upstream there is no
// default route and no demo upstream: a client no route takes is closed
// and counted in relay_refused_total{reason="no_route"}.
func TestSNIRoutingNoDefault(t *testing.T) {
	noLeaks(t)
	cert := newSNICert(t)
	a := namedTLSServer(t, "A", cert, false)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-route", "api.test="+a, "-metrics", "127.0.0.1:0")
	if got, err := roundTrip(t, r.addr, "hello", tlsDial("api.test", cert)); err != nil || got != "A" {
		t.Fatalf("api.test: got %q, %v; want A", got, err)
	}
	if got, err := roundTrip(t, r.addr, "hello", tlsDial("other.test", cert)); err == nil {
		t.Fatalf("other.test: got %q; want the client closed", got)
	}
	if strings.Contains(r.stderr.String(), "demo upstream") {
		t.Errorf("the demo upstream started; log:\n%s", r.stderr)
	}
	body := scrape(t, r)
	wantMetric(t, body, 1, "relay_refused_total", "reason", "no_route")
	wantMetric(t, body, 0, "relay_peek_failures_total")
	wantMetric(t, body, 1, "relay_server_up", "route", "api.test", "server", a, "name", a)
	page := httpGet(t, "http://"+r.waitLog(metricsAddrRE)[1]+"/")
	if !strings.Contains(page, "<h2>Route api.test</h2>") || !strings.Contains(page, a) || !strings.Contains(page, "no route <b>1</b>") {
		t.Errorf("status page lacks the route's servers or the refusal:\n%s", page)
	}
	// The summary counts the route's server; with no default there is no
	// empty default table.
	if !strings.Contains(page, "servers up <b>1</b> of 1") || strings.Contains(page, "<h2>Servers</h2>") {
		t.Errorf("status page summary or tables wrong with routes only:\n%s", page)
	}
	r.mustStop()
}

var metricsAddrRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// scrape returns r's /metrics.
func scrape(t *testing.T, r *proxyRun) string {
	t.Helper()
	return httpGet(t, "http://"+r.waitLog(metricsAddrRE)[1]+"/metrics")
}

// httpGet returns url's body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: waitFor}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSNIRoutingOpenSSL: openssl s_client asking for api.test gets A's
// certificate (verified for api.test) and A's answer.
func TestSNIRoutingOpenSSL(t *testing.T) {
	noLeaks(t)
	bin, err := exec.LookPath("openssl")
	if err != nil {
		msg := "openssl not found on PATH (apt-get install openssl)"
		if os.Getenv(realserver.RequireEnv) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cert := newSNICert(t)
	certFile, _, err := cert.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := namedTLSServer(t, "A", cert, true), namedTLSServer(t, "B", cert, true)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-route", "api.test="+a, "-upstream", b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", r.addr, "-servername", "api.test",
		"-CAfile", certFile, "-verify_hostname", "api.test", "-verify_return_error", "-quiet")
	cmd.Stdin = strings.NewReader("hello\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != "A\n" {
		t.Fatalf("openssl s_client: %q, %v; stderr:\n%s", out, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "verify return:1") {
		t.Errorf("openssl did not verify the certificate; stderr:\n%s", stderr.String())
	}
	r.mustStop()
}

// dialFrom dials addr from the loopback address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: waitFor, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// TestAllowDeny: -allow 127.0.0.0/8 -deny 127.0.0.66: a client from
// 127.0.0.66 is closed unanswered and counted; one from 127.0.0.1 served.
func TestAllowDeny(t *testing.T) {
	noLeaks(t)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-allow", "127.0.0.0/8", "-deny", "127.0.0.66", "-metrics", "127.0.0.1:0")
	if got, err := roundTrip(t, r.addr, "hi", nil); err != nil || !demoReplyRE.MatchString(got) {
		t.Fatalf("from 127.0.0.1: %q, %v", got, err)
	}
	got, err := roundTrip(t, r.addr, "hi", func(a string) (net.Conn, error) { return dialFrom("127.0.0.66", a) })
	if err == nil {
		t.Fatalf("from 127.0.0.66: got %q; want closed", got)
	}
	wantMetric(t, scrape(t, r), 1, "relay_refused_total", "reason", "denied")
	r.mustStop()
}

// TestMaxSessionsPerIP: 20 concurrent clients from one address with a
// cap of 3: exactly 3 are served (their sessions held open), 17 closed
// and counted.
func TestMaxSessionsPerIP(t *testing.T) {
	noLeaks(t)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-max-sessions-per-ip", "3", "-metrics", "127.0.0.1:0")
	const n = 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		served []net.Conn
		closed int
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialFrom("127.0.0.20", r.addr)
			if err != nil {
				t.Error(err)
				return
			}
			c.SetDeadline(time.Now().Add(waitFor))
			_, werr := io.WriteString(c, "hi\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			if werr == nil && err == nil && demoReplyRE.MatchString(strings.TrimSuffix(line, "\n")) {
				served = append(served, c) // held open until all are done
				return
			}
			closed++
			c.Close()
		}()
	}
	wg.Wait()
	for _, c := range served {
		c.Close()
	}
	if len(served) != 3 || closed != n-3 {
		t.Fatalf("served %d, closed %d; want 3 and %d", len(served), closed, n-3)
	}
	// Another address is not counted against 127.0.0.20.
	if got, err := roundTrip(t, r.addr, "hi", nil); err != nil || !demoReplyRE.MatchString(got) {
		t.Fatalf("from 127.0.0.1: %q, %v", got, err)
	}
	wantMetric(t, scrape(t, r), n-3, "relay_refused_total", "reason", "per_ip_limit")
	r.mustStop()
}

// TestReloadRoutes: a SIGHUP applies a running route's new servers (by
// its names) and -upstream; a route added needs a restart and is named
// in the warning; with no default route, a new -upstream needs one too.
func TestReloadRoutes(t *testing.T) {
	noLeaks(t)
	cert := newSNICert(t)
	a, b, c := namedTLSServer(t, "A", cert, false), namedTLSServer(t, "B", cert, false), namedTLSServer(t, "C", cert, false)
	conf := writeFile(t, "relay.conf", "route api.test="+a+"\nupstream "+b+"\n")
	trigger := make(chan os.Signal)
	r := startProxyWith(t, runOptions{reload: trigger}, "-listen", "127.0.0.1:0", "-config", conf)
	ask := func(name, want string) {
		t.Helper()
		if got, err := roundTrip(t, r.addr, "hi", tlsDial(name, cert)); err != nil || got != want {
			t.Fatalf("%s: got %q, %v; want %q; log:\n%s", name, got, err, want, r.stderr)
		}
	}
	ask("api.test", "A")
	ask("other.test", "B")

	if err := os.WriteFile(conf, []byte("route api.test="+c+"\nroute other.test="+a+"\nupstream "+c+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reloadNow(trigger)
	m := r.waitLog(regexp.MustCompile(`msg="relay reloaded" upstream=(\S+) balance=\S+ changed=(\S+) routes=(\S+)`))
	if m[1] != c || m[2] != "-upstream,-route" || m[3] != `"api.test=`+c+`"` {
		t.Errorf("reloaded line %q", m[0])
	}
	if m := r.waitLog(restartRE); m[1] != "-route" {
		t.Errorf("restart warning names %q; want -route", m[1])
	}
	ask("api.test", "C")
	ask("other.test", "C") // the default: other.test's route waits for a restart
	r.mustStop()

	// No default route: a new -upstream waits for a restart.
	conf2 := writeFile(t, "relay2.conf", "route api.test="+a+"\n")
	r = startProxyWith(t, runOptions{reload: trigger}, "-listen", "127.0.0.1:0", "-config", conf2)
	if err := os.WriteFile(conf2, []byte("route api.test="+b+"\nupstream "+c+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reloadNow(trigger)
	if m := r.waitLog(restartRE); m[1] != "-upstream" {
		t.Errorf("restart warning names %q; want -upstream", m[1])
	}
	ask("api.test", "B")
	if got, err := roundTrip(t, r.addr, "hi", tlsDial("other.test", cert)); err == nil {
		t.Fatalf("other.test with no default route: got %q; want closed", got)
	}
	r.mustStop()
}

// TestRouteServersDialPlain: with -upstream-tls, -upstream's servers are
// dialed with TLS and a route's are not: the routed client's own TLS
// passes through to them.
func TestRouteServersDialPlain(t *testing.T) {
	cfg, err := parseConfig([]string{"-upstream", "127.0.0.1:1", "-upstream-tls", "-route", "a.test=127.0.0.1:2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.balanceConfig(cfg.upstreams, nil).Dial == nil {
		t.Error("-upstream's servers: no TLS dialer")
	}
	if cfg.routeBalanceConfig(cfg.routes[0].servers, nil).Dial != nil {
		t.Error("a route's servers: a TLS dialer; want plain TCP")
	}
}
