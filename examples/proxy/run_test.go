package main

import (
	"errors"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/relaykit/relay/internal/logbuf"
)

// TestRunCycle runs the whole program the way a user does, with the
// configuration from each source: start with the embedded demo upstream,
// proxy a session, cancel ctx (what SIGTERM does), and check that run
// returned nil and left no goroutine behind.
func TestRunCycle(t *testing.T) {
	conf := writeFile(t, "relay.conf", "listen 127.0.0.1:0\nreuse clean\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "args", args: []string{"-listen", "127.0.0.1:0", "-reuse", "clean"}},
		{name: "env", env: map[string]string{"RELAY_LISTEN": "127.0.0.1:0", "RELAY_REUSE": "clean"}},
		{name: "config file", args: []string{"-config", conf}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noLeaks(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := startProxy(t, tt.args...)
			// The source was read: the port is the kernel's pick, not the
			// default 7070, and the policy is the one set.
			if _, port, _ := net.SplitHostPort(r.addr); port == "7070" || port == "0" {
				t.Errorf("bound address: got %s; want a kernel-chosen port", r.addr)
			}
			if line := r.waitLog(regexp.MustCompile(`msg="relay listening".*`))[0]; !strings.Contains(line, "reuse=clean") {
				t.Errorf("listening line: got %q; want reuse=clean", line)
			}
			r.waitLog(regexp.MustCompile(`try="echo hello \| nc 127\.0\.0\.1 \d+"`))

			reply, err := roundTrip(t, r.addr, "hello", nil)
			if err != nil {
				t.Fatalf("session: %v; log:\n%s", err, r.stderr)
			}
			if m := demoReplyRE.FindStringSubmatch(reply); m == nil || m[2] != "hello" {
				t.Errorf("reply: got %q; want \"upstream conn #N: hello\"", reply)
			}
			r.mustStop()
			if log := r.stderr.String(); !strings.Contains(log, `msg="relay stopped"`) {
				t.Errorf("log: got %q; want a \"relay stopped\" line", log)
			}
			// Nothing listens any more.
			if c, err := net.Dial("tcp", r.addr); err == nil {
				c.Close()
				t.Errorf("dial %s after stop: got a connection; want refused", r.addr)
			}
		})
	}
}

// TestRunReuse proxies two sessions one after the other and reads from
// the demo upstream's reply which upstream connection served each: with
// -reuse clean the second session gets the first one's connection back;
// with -reuse never it must not.
func TestRunReuse(t *testing.T) {
	sessionEnded := regexp.MustCompile(`msg="session ended".*`)
	tests := []struct {
		reuse    string
		wantSame bool
	}{
		{"clean", true},
		{"never", false},
	}
	for _, tt := range tests {
		t.Run(tt.reuse, func(t *testing.T) {
			noLeaks(t)
			r := startProxy(t, "-listen", "127.0.0.1:0", "-reuse", tt.reuse, "-log-level", "debug", "-drain-timeout", "20ms")
			var conns [2]string
			for i := range conns {
				reply, err := roundTrip(t, r.addr, "hello", nil)
				if err != nil {
					t.Fatalf("session %d: %v; log:\n%s", i+1, err, r.stderr)
				}
				m := demoReplyRE.FindStringSubmatch(reply)
				if m == nil {
					t.Fatalf("session %d reply: got %q; want \"upstream conn #N: hello\"", i+1, reply)
				}
				conns[i] = m[1]
				// Wait for the release, so that the next session can get
				// the connection back.
				r.waitLogN(sessionEnded, i+1)
			}
			if got := conns[0] == conns[1]; got != tt.wantSame {
				t.Errorf("-reuse %s: sessions served by upstream conns #%s and #%s; want same=%t; log:\n%s",
					tt.reuse, conns[0], conns[1], tt.wantSame, r.stderr)
			}
			r.mustStop()
		})
	}
}

// TestRunUpstreamDown checks that a client is closed, not left hanging,
// when the upstream refuses connections, and that run still stops cleanly.
func TestRunUpstreamDown(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now

	r := startProxy(t, "-listen", "127.0.0.1:0", "-upstream", dead, "-spares", "0", "-get-timeout", "2s")
	if reply, err := roundTrip(t, r.addr, "hello", nil); err == nil {
		t.Errorf("session with the upstream down: got reply %q; want the client closed", reply)
	}
	r.waitLog(regexp.MustCompile(`level=WARN msg="client closed".*get upstream`))
	r.mustStop()
}

// TestRunAddressBusy checks that an address in use is a runtime error
// (exit status 1), not a usage error, that it names the flag, and that
// what run had started by then (demo upstream, pool spares, listener) is
// stopped before it returns.
func TestRunAddressBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, flag := range []string{"-listen", "-metrics"} {
		t.Run(flag, func(t *testing.T) {
			noLeaks(t)
			args := []string{"-listen", "127.0.0.1:0", flag, busy}
			var sink logbuf.Buffer
			err := run(t.Context(), args, &sink, &sink)
			var ue *usageError
			switch {
			case err == nil:
				t.Fatalf("run(%q): got nil; want an error", args)
			case errors.As(err, &ue):
				t.Errorf("run(%q): got usage error %v; want a runtime error", args, err)
			case !strings.Contains(err.Error(), flag+" "+busy):
				t.Errorf("run(%q): got %q; want it to name %s %s", args, err, flag, busy)
			}
		})
	}
}
