package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/balance"
)

// namedEcho is a tiny loopback upstream: a line echo that prefixes each
// reply with its name ("A: hello"), so that a client sees which server
// served it.
type namedEcho struct {
	name string
	ln   net.Listener

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// startNamedEcho starts an echo server named name, closed at the end of the
// test (registered now, it closes after any proxy started later).
func startNamedEcho(t *testing.T, name string) *namedEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &namedEcho{name: name, ln: ln, conns: make(map[net.Conn]struct{})}
	e.wg.Add(1)
	go e.accept()
	t.Cleanup(e.close)
	return e
}

func (e *namedEcho) addr() string { return e.ln.Addr().String() }

func (e *namedEcho) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return // closed
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go e.serve(c)
	}
}

func (e *namedEcho) serve(c net.Conn) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s: %s", e.name, line); err != nil {
			return
		}
	}
}

// stopAccepting closes the listener: dials are refused from now on,
// while the connections already made keep being served, as by a server
// that stops or restarts behind a closed port.
func (e *namedEcho) stopAccepting() { e.ln.Close() }

// close stops the server and its connections and waits for its
// goroutines.
func (e *namedEcho) close() {
	e.mu.Lock()
	e.closed = true
	e.ln.Close()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// servedBy sends line through the proxy at addr in a session of its own
// and returns the name of the echo server that answered.
func servedBy(t *testing.T, addr, line string) (string, error) {
	t.Helper()
	reply, err := roundTrip(t, addr, line, nil)
	if err != nil {
		return "", err
	}
	name, echoed, ok := strings.Cut(reply, ": ")
	if !ok || echoed != line {
		return "", fmt.Errorf("reply %q; want \"<server>: %s\"", reply, line)
	}
	return name, nil
}

// lineConn is a client session held open across several round trips.
type lineConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{c: c, r: bufio.NewReader(c)}
}

// ask sends line and returns the reply's line without its newline.
func (l *lineConn) ask(line string) (string, error) {
	l.c.SetDeadline(time.Now().Add(waitFor))
	if _, err := l.c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	reply, err := l.r.ReadString('\n')
	return strings.TrimSuffix(reply, "\n"), err
}

// TestParseConfigUpstreams checks the flags of several upstreams and
// their health checks: good values from each source, and that each bad
// value fails at start with a usage error naming the flag.
func TestParseConfigUpstreams(t *testing.T) {
	good := []struct {
		name string
		args []string
		env  map[string]string
		want func(*config) bool
	}{
		{"defaults", nil, nil, func(c *config) bool {
			return c.upstreams == nil && c.balance == balance.RoundRobin && c.healthEvery == 0 &&
				c.healthRise == 2 && c.healthFall == 3 && c.healthSend == nil && c.resolveEvery == 30*time.Second &&
				c.maxSessionsPerServer == 0 && c.balanceConfig(nil, nil).ResolveEvery == 30*time.Second
		}},
		{"one", []string{"-upstream", "db.internal:6379"}, nil, func(c *config) bool {
			return len(c.upstreams) == 1 && c.upstreams[0] == balance.Server{Addr: "db.internal:6379", Weight: 1}
		}},
		{"several with weights", []string{"-upstream", "10.0.0.1:6379, 10.0.0.2:6379@3,[::1]:6379@256"}, nil, func(c *config) bool {
			return formatServers(c.upstreams) == "10.0.0.1:6379,10.0.0.2:6379@3,[::1]:6379@256" &&
				c.upstreams[1].Weight == 3 && c.upstreams[2].Weight == balance.MaxWeight
		}},
		{"weight 1 prints plain", []string{"-upstream", "a:1@1"}, nil, func(c *config) bool { return formatServers(c.upstreams) == "a:1" }},
		{"empty is the demo", []string{"-upstream", ""}, nil, func(c *config) bool { return c.upstreams == nil }},
		{"env", nil, map[string]string{"RELAY_UPSTREAM": "a:1,b:2@2", "RELAY_BALANCE": "least-conn",
			"RELAY_MAX_SESSIONS_PER_SERVER": "9", "RELAY_RESOLVE_EVERY": "0"}, func(c *config) bool {
			return formatServers(c.upstreams) == "a:1,b:2@2" && c.balance == balance.LeastConn &&
				c.maxSessionsPerServer == 9 && c.balanceConfig(c.upstreams, nil).MaxSessions == 9 &&
				c.resolveEvery == 0 && c.balanceConfig(c.upstreams, nil).ResolveEvery < 0
		}},
		{"balance names", []string{"-balance", "Client-IP"}, nil, func(c *config) bool { return c.balance == balance.ClientIP }},
		{"balance random", []string{"-balance", "random"}, nil, func(c *config) bool { return c.balance == balance.Random }},
		{"health check", []string{"-health-every", "2s", "-health-timeout", "500ms", "-health-rise", "1", "-health-fall", "5",
			"-health-send", `HI\r\n`, "-health-expect", `OK\x0d`}, nil, func(c *config) bool {
			ck := c.balanceConfig(nil, nil).Check
			return ck.Every == 2*time.Second && ck.Timeout == 500*time.Millisecond && ck.Rise == 1 && ck.Fall == 5 &&
				string(ck.Send) == "HI\r\n" && string(ck.Expect) == "OK\r"
		}},
		{"health send alone", []string{"-health-every", "1s", "-health-send", "x"}, nil, func(c *config) bool {
			return string(c.healthSend) == "x" && c.healthExpect == nil
		}},
		{"protocol redis implies PING", []string{"-protocol", "redis", "-health-every", "1s"}, nil, func(c *config) bool {
			return string(c.healthSend) == "PING\r\n" && string(c.healthExpect) == "+PONG\r\n"
		}},
		{"protocol memcached implies mn", []string{"-protocol", "memcached", "-health-every", "1s"}, nil, func(c *config) bool {
			return string(c.healthSend) == "mn\r\n" && string(c.healthExpect) == "MN\r\n"
		}},
		{"protocol check without health-every", []string{"-protocol", "redis"}, nil, func(c *config) bool {
			return c.healthSend == nil && c.balanceConfig(nil, nil).Check.Every == 0
		}},
		{"health-send wins over protocol", []string{"-protocol", "redis", "-health-every", "1s", "-health-send", `ECHO x\r\n`}, nil, func(c *config) bool {
			return string(c.healthSend) == "ECHO x\r\n" && c.healthExpect == nil
		}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.args, tt.env)
			if !tt.want(cfg) {
				t.Errorf("parseConfig(%q) with env %v: got %+v", tt.args, tt.env, cfg)
			}
		})
	}

	bad := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"upstream no port", []string{"-upstream", "a:1,db"}, nil, `invalid value "a:1,db" for flag -upstream: "db": want host:port`},
		{"upstream bad port", []string{"-upstream", "a:1,b:99999"}, nil, `invalid value "a:1,b:99999" for flag -upstream: "b:99999": port`},
		{"upstream port 0", []string{"-upstream", "a:0"}, nil, `for flag -upstream: "a:0": port`},
		{"upstream named port", []string{"-upstream", "a:redis"}, nil, `for flag -upstream: "a:redis": port`},
		{"upstream no host", []string{"-upstream", ":6379"}, nil, `for flag -upstream: ":6379": no host`},
		{"upstream duplicate", []string{"-upstream", "a:1,b:1,A:1@2"}, nil, `invalid value "a:1,b:1,A:1@2" for flag -upstream: "A:1" given twice`},
		{"upstream empty element", []string{"-upstream", "a:1,,b:1"}, nil, "for flag -upstream: empty element"},
		{"upstream trailing comma", []string{"-upstream", "a:1,"}, nil, "for flag -upstream: empty element"},
		{"weight 0", []string{"-upstream", "a:1@0"}, nil, `invalid value "a:1@0" for flag -upstream: "a:1@0": weight must be a whole number from 1 to 256`},
		{"weight too big", []string{"-upstream", "a:1@257"}, nil, `for flag -upstream: "a:1@257": weight`},
		{"weight negative", []string{"-upstream", "a:1@-1"}, nil, `for flag -upstream: "a:1@-1": weight`},
		{"weight not a number", []string{"-upstream", "a:1@x"}, nil, `for flag -upstream: "a:1@x": weight`},
		{"weight empty", []string{"-upstream", "a:1@"}, nil, `for flag -upstream: "a:1@": weight`},
		{"env bad upstream", nil, map[string]string{"RELAY_UPSTREAM": "a:1@300"}, "RELAY_UPSTREAM"},
		{"upstream does not resolve", []string{"-upstream", "127.0.0.1:1,nohost.invalid:1"}, nil, "nohost.invalid"},
		{"balance unknown", []string{"-balance", "fastest"}, nil, `invalid value "fastest" for flag -balance: want round-robin, least-conn, random or client-ip`},
		{"env bad balance", nil, map[string]string{"RELAY_BALANCE": "ip-hash"}, "RELAY_BALANCE"},
		{"max-sessions-per-server negative", []string{"-max-sessions-per-server", "-1"}, nil, `invalid value "-1" for flag -max-sessions-per-server`},
		{"resolve-every negative", []string{"-resolve-every", "-1s"}, nil, `invalid value "-1s" for flag -resolve-every`},
		{"health-every negative", []string{"-health-every", "-1s"}, nil, `invalid value "-1s" for flag -health-every`},
		{"health-every no unit", []string{"-health-every", "5"}, nil, `invalid value "5" for flag -health-every`},
		{"health-timeout negative", []string{"-health-every", "1s", "-health-timeout", "-1s"}, nil, `invalid value "-1s" for flag -health-timeout`},
		{"health-rise 0", []string{"-health-every", "1s", "-health-rise", "0"}, nil, `invalid value "0" for flag -health-rise: must be at least 1`},
		{"health-fall negative", []string{"-health-every", "1s", "-health-fall", "-2"}, nil, `invalid value "-2" for flag -health-fall: must be at least 1`},
		{"health-fall not a number", []string{"-health-every", "1s", "-health-fall", "x"}, nil, `invalid value "x" for flag -health-fall`},
		{"health-send bad escape", []string{"-health-every", "1s", "-health-send", `PING\q`}, nil, "-health-send"},
		{"health-expect bad hex", []string{"-health-every", "1s", "-health-send", "x", "-health-expect", `\xZZ`}, nil, "-health-expect"},
		{"health-expect without send", []string{"-health-every", "1s", "-health-expect", "OK"}, nil, "flag -health-expect needs -health-send"},
		{"health-expect without send, protocol", []string{"-protocol", "redis", "-health-every", "1s", "-health-expect", "OK"}, nil, "flag -health-expect needs -health-send"},
		{"health-expect too long", []string{"-health-every", "1s", "-health-send", "x", "-health-expect", strings.Repeat("y", 4097)}, nil, "for flag -health-expect: 4097 bytes"},
		{"health-send without every", []string{"-health-send", "x"}, nil, "flag -health-send needs -health-every"},
		{"health-expect without every", []string{"-health-send", "x", "-health-expect", "y"}, nil, "needs -health-every"},
		{"health-rise without every", []string{"-health-rise", "3"}, nil, "flag -health-rise needs -health-every"},
		{"health-fall without every", []string{"-health-fall", "3"}, nil, "flag -health-fall needs -health-every"},
		{"health-timeout without every", []string{"-health-timeout", "1s"}, nil, "flag -health-timeout needs -health-every"},
		{"health-every 0 with rise", []string{"-health-every", "0", "-health-rise", "3"}, nil, "flag -health-rise needs -health-every"},
		{"env health-fall without every", nil, map[string]string{"RELAY_HEALTH_FALL": "2"}, "flag -health-fall needs -health-every"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out strings.Builder
			err := run(t.Context(), tt.args, &out, &out)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("run(%q): got %T %v; want *usageError", tt.args, err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q): got %q; want it to contain %q", tt.args, err, tt.want)
			}
			if out.Len() > 0 {
				t.Errorf("run(%q) wrote %q before failing; want nothing", tt.args, out.String())
			}
		})
	}
}

// TestRunSeveralUpstreams proxies sessions one after another to three
// echo servers and counts who served each: round-robin takes every
// server in turn, weights (a@3,b) give a three times b's share in the
// smooth weighted order, and client-ip sends one client IP to one
// server.
func TestRunSeveralUpstreams(t *testing.T) {
	tests := []struct {
		name     string
		upstream func(a, b, c string) string
		balance  string
		want     map[string]int // sessions per server, of 12
	}{
		{"round-robin", func(a, b, c string) string { return a + "," + b + "," + c }, "round-robin", map[string]int{"A": 4, "B": 4, "C": 4}},
		{"weights", func(a, b, _ string) string { return a + "@3," + b }, "round-robin", map[string]int{"A": 9, "B": 3}},
		{"client-ip", func(a, b, c string) string { return a + "," + b + "," + c }, "client-ip", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			a, b, c := startNamedEcho(t, "A"), startNamedEcho(t, "B"), startNamedEcho(t, "C")
			up := tt.upstream(a.addr(), b.addr(), c.addr())
			r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", up, "-balance", tt.balance)
			line := r.waitLog(regexp.MustCompile(`msg="relay listening".*`))[0]
			if want := "upstream=" + up + " balance=" + tt.balance; !strings.Contains(line, want) {
				t.Errorf("listening line %q; want it to contain %q", line, want)
			}
			got := map[string]int{}
			for i := range 12 {
				name, err := servedBy(t, r.addr, fmt.Sprint("hello ", i))
				if err != nil {
					t.Fatalf("session %d: %v; log:\n%s", i+1, err, r.stderr)
				}
				got[name]++
			}
			switch {
			case tt.want == nil && len(got) != 1: // client-ip: one client, one server
				t.Errorf("sessions per server %v; want all 12 on one", got)
			case tt.want != nil && fmt.Sprint(got) != fmt.Sprint(tt.want):
				t.Errorf("sessions per server %v; want %v", got, tt.want)
			}
			r.mustStop()
		})
	}
}

// TestRunUpstreamStopped has clients loop request/response, each in a
// session of its own, over three upstreams while one of them stops
// accepting: no client sees a failure. Dials to the stopped server are
// refused and retried on another, until the set ejects it. (Its
// connections already made keep being served: a session in progress on
// a server that dies is lost whatever the proxy does, so killing them
// would make the test depend on timing.)
func TestRunUpstreamStopped(t *testing.T) {
	noLeaks(t)
	a, b, c := startNamedEcho(t, "A"), startNamedEcho(t, "B"), startNamedEcho(t, "C")
	r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", a.addr()+","+b.addr()+","+c.addr(), "-spares", "2")

	const clients, before, after = 4, 5, 15
	stopped := make(chan struct{})
	ejected := regexp.MustCompile(`msg="balance: server ejected" addr=` + regexp.QuoteMeta(c.addr()))
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, sinceStop := 0, 0
			defer func() {
				if n < before { // failed early: do not hold the others up
					started.Done()
				}
			}()
			deadline := time.Now().Add(waitFor)
			for {
				if _, err := servedBy(t, r.addr, fmt.Sprintf("client %d request %d", i, n)); err != nil {
					errs <- fmt.Errorf("client %d, request %d (%d after the stop): %w", i, n, sinceStop, err)
					return
				}
				n++
				if n == before {
					started.Done()
				}
				select {
				case <-stopped:
					sinceStop++
				default:
				}
				// Go on past the stop until the proxy has ejected C.
				if sinceStop >= after && ejected.MatchString(r.stderr.String()) {
					errs <- nil
					return
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("client %d: C not ejected within %v (%d requests after the stop)", i, waitFor, sinceStop)
					return
				}
			}
		}()
	}
	started.Wait() // every client is looping
	c.stopAccepting()
	close(stopped)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("%v; log:\n%s", err, r.stderr)
		}
	}
	r.mustStop()
}
