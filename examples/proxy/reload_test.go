package main

import (
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The reload tests trigger reloads through runOptions.reload rather than
// by signalling the test process: a SIGHUP that reached the process
// before run's handler (or after it stopped) would kill the whole test
// binary. TestMainSIGHUP covers the signal itself, in a child process.

// reloadNow triggers one reload and waits until the reload actor took it.
func (r *proxyRun) reloadNow(trigger chan<- os.Signal) {
	r.t.Helper()
	select {
	case trigger <- syscall.SIGHUP:
	case <-r.done:
		r.t.Fatalf("run returned %v before the reload; log:\n%s", r.err, r.stderr)
	case <-time.After(waitFor):
		r.t.Fatalf("reload not taken within %v; log:\n%s", waitFor, r.stderr)
	}
}

// rewrite replaces the config file's content.
func rewrite(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	reloadedRE = regexp.MustCompile(`level=INFO msg="relay reloaded" upstream=(\S+) balance=(\S+) changed=(\S+)`)
	refusedRE  = regexp.MustCompile(`level=ERROR msg="relay reload refused; keeping the running configuration" err=(.*)`)
	restartRE  = regexp.MustCompile(`level=WARN msg="relay reload: changed flags ignored, each needs a restart" flags=(\S+)`)
)

// TestReload starts the proxy on upstream A from a -config file, holds a
// session open, rewrites the file to upstream B with least-conn and
// reloads: the held session goes on with A, new sessions go to B, and a
// changed flag that cannot change live is named in a warning. Then bad
// files are refused with an error in the log, and B keeps serving.
func TestReload(t *testing.T) {
	noLeaks(t)
	a, b := startNamedEcho(t, "A"), startNamedEcho(t, "B")
	conf := writeFile(t, "relay.conf", "upstream "+a.addr()+"\n")
	trigger := make(chan os.Signal) // unbuffered: a send is a reload taken
	r := startProxyWith(t, runOptions{reload: trigger}, "-listen", "127.0.0.1:0", "-config", conf)
	if line := r.waitLog(regexp.MustCompile(`msg="relay listening".*`))[0]; !strings.Contains(line, "upstream="+a.addr()+" balance=round-robin") {
		t.Errorf("listening line %q; want upstream=%s balance=round-robin", line, a.addr())
	}

	live := dialLine(t, r.addr)
	ask := func(line, want string) {
		t.Helper()
		if got, err := live.ask(line); err != nil || got != want {
			t.Fatalf("held session: got %q, %v; want %q; log:\n%s", got, err, want, r.stderr)
		}
	}
	ask("one", "A: one")

	rewrite(t, conf, "upstream "+b.addr()+"@2\nbalance least-conn\nmax-idle 3\n")
	r.reloadNow(trigger)
	m := r.waitLog(reloadedRE)
	if m[1] != b.addr()+"@2" || m[2] != "least-conn" || m[3] != "-upstream,-balance" {
		t.Errorf("reload: got upstream=%s balance=%s changed=%s; want %s@2, least-conn, -upstream,-balance", m[1], m[2], m[3], b.addr())
	}
	if m := r.waitLog(restartRE); m[1] != "-max-idle" {
		t.Errorf("restart warning names %s; want -max-idle", m[1])
	}
	ask("two", "A: two") // the live session was not dropped
	for i := range 4 {
		if name, err := servedBy(t, r.addr, "new"); err != nil || name != "B" {
			t.Fatalf("new session %d after the reload: served by %q, %v; want B; log:\n%s", i+1, name, err, r.stderr)
		}
	}

	// Bad files: each refused, with the reason, and nothing changes.
	bad := []struct{ content, reason string }{
		{"upstream nohost\n", `\"upstream\" from config file: \"nohost\": want host:port`},
		{"upstream " + a.addr() + "@0\n", "weight must be"},
		{"upstream " + a.addr() + "\nbalance fastest\n", `\"balance\" from config file: want round-robin`},
		{"upstream " + a.addr() + "\nhealth-rise 3\n", "-health-rise needs -health-every"},
		{"upstream " + a.addr() + "\nsparez 3\n", "sparez"},
	}
	for i, tt := range bad {
		rewrite(t, conf, tt.content)
		r.reloadNow(trigger)
		if m := r.waitLogN(refusedRE, i+1)[i]; !strings.Contains(m[1], tt.reason) {
			t.Errorf("file %q refused for %s; want the reason to contain %q", tt.content, m[1], tt.reason)
		}
		if name, err := servedBy(t, r.addr, "after a bad file"); err != nil || name != "B" {
			t.Fatalf("new session after a refused reload: served by %q, %v; want B; log:\n%s", name, err, r.stderr)
		}
	}
	if n := len(reloadedRE.FindAllString(r.stderr.String(), -1)); n != 1 {
		t.Errorf("%d \"relay reloaded\" lines; want 1 (the bad files changed nothing); log:\n%s", n, r.stderr)
	}
	ask("three", "A: three")

	// A missing file is refused too.
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	r.reloadNow(trigger)
	if m := r.waitLogN(refusedRE, len(bad)+1)[len(bad)]; !strings.Contains(m[1], "-config") {
		t.Errorf("missing file refused for %s; want it to name -config", m[1])
	}
	ask("four", "A: four")
	live.c.Close()
	r.mustStop()
}

// TestReloadSources checks where a reload reads from: the command line
// as given still wins, the environment is read again and wins over the
// file, and a reload that changes nothing says so. With the demo
// upstream, an empty -upstream stays the demo.
func TestReloadSources(t *testing.T) {
	noLeaks(t)
	a, b := startNamedEcho(t, "A"), startNamedEcho(t, "B")
	conf := writeFile(t, "relay.conf", "")
	trigger := make(chan os.Signal)
	r := startProxyWith(t, runOptions{reload: trigger}, "-listen", "127.0.0.1:0", "-config", conf, "-balance", "client-ip")
	demo := regexp.MustCompile(`msg="relay listening" addr=\S+ upstream=(\S+) balance=client-ip`)
	demoAddr := r.waitLog(demo)[1]

	r.reloadNow(trigger)
	if m := r.waitLog(reloadedRE); m[1] != demoAddr || m[2] != "client-ip" || m[3] != "none" {
		t.Errorf("reload of the same: got upstream=%s balance=%s changed=%s; want %s, client-ip, none", m[1], m[2], m[3], demoAddr)
	}

	// The file names A and least-conn; the command line's client-ip wins.
	rewrite(t, conf, "upstream "+a.addr()+"\nbalance least-conn\n")
	r.reloadNow(trigger)
	if m := r.waitLogN(reloadedRE, 2)[1]; m[1] != a.addr() || m[2] != "client-ip" || m[3] != "-upstream" {
		t.Errorf("reload: got upstream=%s balance=%s changed=%s; want %s, client-ip, -upstream", m[1], m[2], m[3], a.addr())
	}
	if name, err := servedBy(t, r.addr, "x"); err != nil || name != "A" {
		t.Fatalf("session: served by %q, %v; want A; log:\n%s", name, err, r.stderr)
	}

	// The environment, read again, wins over the file.
	t.Setenv("RELAY_UPSTREAM", b.addr())
	r.reloadNow(trigger)
	if m := r.waitLogN(reloadedRE, 3)[2]; m[1] != b.addr() {
		t.Errorf("reload: got upstream=%s; want %s from RELAY_UPSTREAM", m[1], b.addr())
	}
	if name, err := servedBy(t, r.addr, "x"); err != nil || name != "B" {
		t.Fatalf("session: served by %q, %v; want B; log:\n%s", name, err, r.stderr)
	}

	// Back to no upstream at all: the demo upstream, still running.
	t.Setenv("RELAY_UPSTREAM", "")
	rewrite(t, conf, "")
	r.reloadNow(trigger)
	if m := r.waitLogN(reloadedRE, 4)[3]; m[1] != demoAddr {
		t.Errorf("reload: got upstream=%s; want the demo's %s", m[1], demoAddr)
	}
	if reply, err := roundTrip(t, r.addr, "hello", nil); err != nil || !demoReplyRE.MatchString(reply) {
		t.Fatalf("session: got %q, %v; want the demo's echo; log:\n%s", reply, err, r.stderr)
	}
	if strings.Contains(r.stderr.String(), "level=WARN") {
		t.Errorf("a warning; want none (only live flags changed); log:\n%s", r.stderr)
	}
	r.mustStop()
}
