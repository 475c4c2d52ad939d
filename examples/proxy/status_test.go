package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// statusEcho is a tiny loopback upstream that echoes what it reads.
type statusEcho struct {
	ln    net.Listener
	addr  string
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func startStatusEcho(t *testing.T) *statusEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &statusEcho{ln: ln, addr: ln.Addr().String(), conns: make(map[net.Conn]struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			if e.conns == nil { // stopped
				e.mu.Unlock()
				c.Close()
				return
			}
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				io.Copy(c, c)
				c.Close()
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(e.stop)
	return e
}

// stop closes the listener and every connection, and waits for the
// goroutines: the port then refuses connections.
func (e *statusEcho) stop() {
	e.once.Do(func() {
		e.ln.Close()
		e.mu.Lock()
		for c := range e.conns {
			c.Close()
		}
		e.conns = nil
		e.mu.Unlock()
		e.wg.Wait()
	})
}

// statusRig is a balance.Set over two echo servers, a ProxyListener
// over the set and the metrics server, all on loopback.
type statusRig struct {
	t      *testing.T
	echoes []*statusEcho
	set    *balance.Set
	pl     *listener.ProxyListener
	proxy  string // the proxy's address
	http   string // the metrics server's address
	client *http.Client
}

func startStatusRig(t *testing.T) *statusRig {
	t.Helper()
	r := &statusRig{t: t, echoes: []*statusEcho{startStatusEcho(t), startStatusEcho(t)}}
	var servers []balance.Server
	for _, e := range r.echoes {
		servers = append(servers, balance.Server{Addr: e.addr})
	}
	set, err := balance.New(balance.Config{
		Servers:      servers,
		Pool:         pool.Config{Spares: 1},
		Passive:      balance.Passive{Failures: 1, Ejection: time.Hour},
		ResolveEvery: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.set = set
	t.Cleanup(func() { set.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := listener.New(ln, set, listener.Config{GetTimeout: waitFor})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	r.pl, r.proxy = pl, pl.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		pl.Serve()
	}()
	t.Cleanup(func() {
		pl.Close()
		<-served
	})

	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetricsServer(mln, pl, []namedSet{{name: defaultRoute, set: set}})
	if err != nil {
		mln.Close()
		t.Fatal(err)
	}
	r.http = mln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- m.serve() }()
	t.Cleanup(func() {
		m.stop()
		if err := <-done; err != nil {
			t.Errorf("metrics serve: %v", err)
		}
	})
	// No keep-alive: an idle client conn would outlive the test.
	r.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitFor}
	return r
}

// do sends a request and returns the status and the body.
func (r *statusRig) do(method, path string) (int, http.Header, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.http+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// get is a GET that must answer 200.
func (r *statusRig) get(path string) string {
	r.t.Helper()
	code, _, body := r.do("GET", path)
	if code != http.StatusOK {
		r.t.Fatalf("GET %s: status %d; want 200; body:\n%s", path, code, body)
	}
	return body
}

// hold opens a session through the proxy and waits for its echo, so that
// it is in the copy phase on a server. It is closed at the end of the
// test.
func (r *statusRig) hold() net.Conn {
	r.t.Helper()
	c, err := net.DialTimeout("tcp", r.proxy, waitFor)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write([]byte("held\n")); err != nil {
		r.t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "held\n" {
		r.t.Fatalf("held session: got %q, %v; want the echo", line, err)
	}
	return c
}

// session returns the live session of the client conn c.
func (r *statusRig) session(c net.Conn) listener.SessionState {
	r.t.Helper()
	for _, s := range r.pl.Sessions() {
		if s.ClientAddr.String() == c.LocalAddr().String() {
			return s
		}
	}
	r.t.Fatalf("no live session from %v in %+v", c.LocalAddr(), r.pl.Sessions())
	return listener.SessionState{}
}

// metricValue returns the value of the series name{labels} in a Prometheus
// text exposition, labels given as name, value pairs in any order.
func metricValue(t *testing.T, body, name string, labels ...string) (float64, bool) {
	t.Helper()
	type pair struct{ k, v string }
	if strings.HasPrefix(name, "relay_server_") && !slices.Contains(labels, "route") {
		labels = append(labels, "route", defaultRoute) // the -upstream set's
	}
	var ps []pair
	for i := 0; i+1 < len(labels); i += 2 {
		ps = append(ps, pair{labels[i], labels[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	b.WriteString(name)
	if len(ps) > 0 {
		b.WriteByte('{')
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", p.k, p.v)
		}
		b.WriteByte('}')
	}
	prefix := b.String() + " "
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("series %s: value %q: %v", prefix, v, err)
			}
			return f, true
		}
	}
	return 0, false
}

// wantMetric fails the test unless the series is there with value want.
func wantMetric(t *testing.T, body string, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := metricValue(t, body, name, labels...)
	switch {
	case !ok:
		t.Errorf("/metrics lacks %s%q; got:\n%s", name, labels, metricLines(body, name))
	case got != want:
		t.Errorf("%s%q = %v; want %v", name, labels, got, want)
	}
}

// metricLines returns the lines of body that start with prefix.
func metricLines(body, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestStatusAndServerMetrics drives two servers through a proxy and
// checks the status page and the per-server metrics: sessions counted
// per server, a live session listed, and a stopped server ejected.
func TestStatusAndServerMetrics(t *testing.T) {
	noLeaks(t)
	r := startStatusRig(t)
	a, b := r.echoes[0].addr, r.echoes[1].addr

	const n = 4
	for i := range n {
		line := fmt.Sprintf("hello %d", i)
		if got, err := roundTrip(t, r.proxy, line, nil); err != nil || got != line {
			t.Fatalf("session %d: got %q, %v; want the echo", i, got, err)
		}
	}
	held := r.hold()
	hs := r.session(held)
	if hs.UpstreamAddr == nil || hs.Phase != listener.PhaseCopy {
		t.Fatalf("held session: %+v; want the copy phase on a server", hs)
	}
	heldOn := hs.UpstreamAddr.String()
	other := a
	if heldOn == a {
		other = b
	}
	// A server counts a session when it hands the connection out: all n
	// ended sessions and the held one are counted by now. The ended ones
	// leave on their own goroutines, after their clients saw the echo:
	// wait until the held one is the only one left.
	r.waitActive(1)
	body := r.get("/metrics")
	var total float64
	for _, s := range r.set.Servers() {
		lbl := []string{"server", s.Addr, "name", s.Name}
		v, ok := metricValue(t, body, "relay_server_sessions_total", lbl...)
		if !ok {
			t.Fatalf("/metrics lacks relay_server_sessions_total for %s; got:\n%s", s.Addr, metricLines(body, "relay_server"))
		}
		// Round-robin over two servers of weight 1: each had half the
		// n sessions, and one the held session too.
		want := float64(n / 2)
		if s.Addr == heldOn {
			want++
		}
		if v != want {
			t.Errorf("relay_server_sessions_total{server=%q} = %v; want %v", s.Addr, v, want)
		}
		total += v
		wantMetric(t, body, 1, "relay_server_up", lbl...)
		wantMetric(t, body, 1, "relay_server_state", append(lbl, "state", "up")...)
		wantMetric(t, body, 0, "relay_server_state", append(lbl, "state", "ejected")...)
		wantMetric(t, body, 1, "relay_server_weight", lbl...)
		wantMetric(t, body, 0, "relay_server_failures_total", append(lbl, "kind", "dial")...)
		wantMetric(t, body, 0, "relay_server_failures_total", append(lbl, "kind", "session")...)
		wantMetric(t, body, 0, "relay_server_failures_total", append(lbl, "kind", "check")...)
		wantMetric(t, body, 0, "relay_server_ejections_total", lbl...)
		var handouts float64
		for _, src := range []string{"reused", "spare", "dial"} {
			v, ok := metricValue(t, body, "relay_server_handouts_total", append(lbl, "source", src)...)
			if !ok {
				t.Errorf("/metrics lacks relay_server_handouts_total{source=%q} for %s", src, s.Addr)
			}
			handouts += v
		}
		if handouts != want {
			t.Errorf("server %s: hand-outs sum to %v; want one per session, %v", s.Addr, handouts, want)
		}
	}
	if total != n+1 {
		t.Errorf("relay_server_sessions_total sums to %v; want %d", total, n+1)
	}
	wantMetric(t, body, 1, "relay_server_active", "server", heldOn, "name", heldOn)
	wantMetric(t, body, 0, "relay_server_active", "server", other, "name", other)
	wantMetric(t, body, 0, "relay_no_server_total")
	wantMetric(t, body, n+1, "relay_sessions_total") // the old metrics stay

	page := r.get("/")
	for _, want := range []string{a, b, `st-up">up<`, held.LocalAddr().String(), "<td class=\"l\">copy</td>", heldOn, "round-robin"} {
		if !strings.Contains(page, want) {
			t.Errorf("/ lacks %q; got:\n%s", want, page)
		}
	}
	if strings.Contains(page, "ejected<") {
		t.Errorf("/ shows a server ejected before any failed; got:\n%s", page)
	}

	// Stop the server that does not hold the session. Its spare dies
	// with it and its next dial fails: one failure ejects it. Sessions
	// meanwhile fail over to the other server (one that gets the dead
	// spare before the pool notices may fail; that is the server's
	// failure too).
	for _, e := range r.echoes {
		if e.addr == other {
			e.stop()
		}
	}
	deadline := time.Now().Add(waitFor)
	for !r.ejected(other) {
		if time.Now().After(deadline) {
			t.Fatalf("server %s not ejected within %v: %+v", other, waitFor, r.set.Servers())
		}
		roundTrip(t, r.proxy, "again", nil)
	}

	body = r.get("/metrics")
	wantMetric(t, body, 0, "relay_server_up", "server", other, "name", other)
	wantMetric(t, body, 1, "relay_server_state", "server", other, "name", other, "state", "ejected")
	wantMetric(t, body, 0, "relay_server_state", "server", other, "name", other, "state", "up")
	wantMetric(t, body, 1, "relay_server_ejections_total", "server", other, "name", other)
	wantMetric(t, body, 1, "relay_server_up", "server", heldOn, "name", heldOn)
	wantMetric(t, body, 0, "relay_server_pool_conns", "server", other, "name", other, "state", "idle_fresh")
	dial, _ := metricValue(t, body, "relay_server_failures_total", "server", other, "name", other, "kind", "dial")
	sess, _ := metricValue(t, body, "relay_server_failures_total", "server", other, "name", other, "kind", "session")
	if dial+sess < 1 {
		t.Errorf("ejected server %s: dial %v + session %v failures; want at least 1", other, dial, sess)
	}

	page = r.get("/")
	row := pageRow(page, other)
	if !strings.Contains(row, `st-ejected">ejected<`) {
		t.Errorf("/: the row of %s does not say ejected: %q; page:\n%s", other, row, page)
	}
	if !strings.Contains(pageRow(page, heldOn), `st-up">up<`) {
		t.Errorf("/: the row of %s does not say up; page:\n%s", heldOn, page)
	}
	if !strings.Contains(page, held.LocalAddr().String()) {
		t.Errorf("/: the held session from %v is gone; page:\n%s", held.LocalAddr(), page)
	}
}

// waitActive polls until the proxy has n live sessions and the servers
// count n sessions in flight between them.
func (r *statusRig) waitActive(n int) {
	r.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		active := 0
		for _, s := range r.set.Servers() {
			active += s.Active
		}
		if r.pl.Stats().Active == int64(n) && active == n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("want %d live sessions within %v; have %d, servers %+v", n, waitFor, r.pl.Stats().Active, r.set.Servers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ejected reports whether the server at addr is ejected.
func (r *statusRig) ejected(addr string) bool {
	for _, s := range r.set.Servers() {
		if s.Addr == addr {
			return s.State == balance.StateEjected
		}
	}
	return false
}

// pageRow returns the first table row of page whose first cell is name.
func pageRow(page, name string) string {
	_, rest, ok := strings.Cut(page, `<tr><td class="l c">`+name+"</td>")
	if !ok {
		return ""
	}
	row, _, _ := strings.Cut(rest, "</tr>")
	return row
}

// TestStatusRoutes checks that the page is at / exactly, for GET and
// HEAD only, with its headers.
func TestStatusRoutes(t *testing.T) {
	noLeaks(t)
	r := startStatusRig(t)

	code, h, body := r.do("GET", "/")
	if code != http.StatusOK || !strings.HasPrefix(body, "<!DOCTYPE html>") {
		t.Errorf("GET /: %d, %.40q; want 200 and the page", code, body)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET /: Content-Type %q", ct)
	}
	if !strings.Contains(body, `<meta http-equiv="refresh" content="5">`) {
		t.Errorf("GET /: no meta refresh")
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /: Content-Security-Policy %q; want default-src 'none'", h.Get("Content-Security-Policy"))
	}
	if code, _, body := r.do("HEAD", "/"); code != http.StatusOK || body != "" {
		t.Errorf("HEAD /: %d, %q; want 200 and no body", code, body)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", http.StatusNotFound},
		{"GET", "/index.html", http.StatusNotFound},
		{"HEAD", "/nope", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"DELETE", "/", http.StatusMethodNotAllowed},
		{"POST", "/nope", http.StatusNotFound},
	} {
		if code, _, _ := r.do(c.method, c.path); code != c.want {
			t.Errorf("%s %s: status %d; want %d", c.method, c.path, code, c.want)
		}
	}
	if body := r.get("/metrics"); !strings.Contains(body, "relay_server_up{") {
		t.Errorf("/metrics lacks relay_server_up")
	}
}

// textAddr is a net.Addr with any string.
type textAddr string

func (a textAddr) Network() string { return "tcp" }
func (a textAddr) String() string  { return string(a) }

// TestStatusPageEscapes renders the page with hostile-looking values: a
// configured server name (which a Set accepts when its resolver does)
// and a client address, and checks that they come out as text.
func TestStatusPageEscapes(t *testing.T) {
	noLeaks(t)
	e := startStatusEcho(t)
	_, port, _ := net.SplitHostPort(e.addr)
	const host = `<script>alert("x")</script>`
	set, err := balance.New(balance.Config{
		Servers:      []balance.Server{{Addr: net.JoinHostPort(host, port)}},
		ResolveEvery: -1,
		Resolve: func(ctx context.Context, h string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	servers := set.Servers()
	if len(servers) != 1 || !strings.Contains(servers[0].Name, host) {
		t.Fatalf("servers: %+v; want one named %q", servers, host)
	}

	p := &statusPage{Listen: "<b>listen</b>", Policy: set.Balance().String(), Servers: servers}
	p.setLive([]listener.SessionState{{
		ID: 1, ClientAddr: textAddr(`"><img src=x onerror=alert(1)>`), UpstreamAddr: textAddr(e.addr),
		Start: time.Now(), Phase: listener.PhaseCopy,
	}}, time.Now())
	var b strings.Builder
	if err := p.render(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script>", "<img", "<b>listen"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q unescaped:\n%s", bad, page)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "&lt;b&gt;listen&lt;/b&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

// TestStatusPageCapsLiveSessions checks the cap on the live sessions
// listed and the line saying how many more there are.
func TestStatusPageCapsLiveSessions(t *testing.T) {
	now := time.Now()
	var ss []listener.SessionState
	for i := range maxLiveRows + 7 {
		ss = append(ss, listener.SessionState{ID: uint64(i + 1), ClientAddr: textAddr(fmt.Sprintf("10.0.0.1:%d", 1000+i)), Start: now.Add(-time.Minute), Phase: listener.PhaseGetUpstream})
	}
	p := &statusPage{}
	p.setLive(ss, now)
	if len(p.Live) != maxLiveRows || p.More != 7 || p.Live[0].ID != 1 || p.Live[0].Age != time.Minute {
		t.Fatalf("setLive: %d rows, first %+v, %d more; want %d rows from ID 1, 1m0s old, and 7 more", len(p.Live), p.Live[0], p.More, maxLiveRows)
	}
	var b strings.Builder
	if err := p.render(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if !strings.Contains(page, "and 7 newer sessions not shown.") {
		t.Errorf("page lacks the line about the 7 more")
	}
	if strings.Contains(page, "10.0.0.1:1200") || !strings.Contains(page, "10.0.0.1:1199") {
		t.Errorf("page: want the first %d sessions only", maxLiveRows)
	}
	if !strings.Contains(page, "none yet") {
		t.Errorf("page: a session without a server does not say so")
	}
}

// TestServerMetricsDraining: a server removed while it holds a session
// shows as draining on the page and in the metrics; listed again, it is
// back, once, and up.
func TestServerMetricsDraining(t *testing.T) {
	noLeaks(t)
	r := startStatusRig(t)
	held := r.hold()
	on := r.session(held).UpstreamAddr.String()
	var rest string
	for _, e := range r.echoes {
		if e.addr != on {
			rest = e.addr
		}
	}
	if err := r.set.Update(context.Background(), []balance.Server{{Addr: rest}}, balance.RoundRobin); err != nil {
		t.Fatal(err)
	}
	body := r.get("/metrics")
	wantMetric(t, body, 0, "relay_server_up", "server", on, "name", on)
	wantMetric(t, body, 1, "relay_server_state", "server", on, "name", on, "state", "draining")
	wantMetric(t, body, 1, "relay_server_active", "server", on, "name", on)
	if page := r.get("/"); !strings.Contains(page, `st-draining">draining<`) {
		t.Errorf("/ does not show the draining server; got:\n%s", page)
	}
	if err := r.set.Update(context.Background(), []balance.Server{{Addr: on}, {Addr: rest}}, balance.RoundRobin); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range r.set.Servers() {
		if s.Addr == on {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("Servers lists %s %d times; want once: %+v", on, n, r.set.Servers())
	}
	body = r.get("/metrics")
	wantMetric(t, body, 1, "relay_server_up", "server", on, "name", on)
	wantMetric(t, body, 1, "relay_server_sessions_total", "server", on, "name", on)
}

func TestHumanBytes(t *testing.T) {
	for _, c := range []struct {
		n    any
		want string
	}{
		{int64(0), "0 B"},
		{uint64(1023), "1023 B"},
		{int64(1024), "1.0 KiB"},
		{int64(1536), "1.5 KiB"},
		{uint64(50 << 20), "50 MiB"},
		{int64(3 << 40), "3.0 TiB"},
		{uint64(5000 << 40), "5000 TiB"},
	} {
		if got := humanBytes(c.n); got != c.want {
			t.Errorf("humanBytes(%v) = %q; want %q", c.n, got, c.want)
		}
	}
}
