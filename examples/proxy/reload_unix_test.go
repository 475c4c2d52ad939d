//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
)

// TestMainSIGHUP runs the program in a child process on upstream A from
// a -config file, holds a session open, rewrites the file to upstream B
// and sends one SIGHUP once the "relay listening" line is out (the
// handler is installed before that line, so the signal cannot kill the
// child). The held session goes on with A, a new one goes to B, and
// SIGTERM after the reload still drains and exits 0.
func TestMainSIGHUP(t *testing.T) {
	a, b := startNamedEcho(t, "A"), startNamedEcho(t, "B")
	conf := writeFile(t, "relay.conf", "listen 127.0.0.1:0\nupstream "+a.addr()+"\n")
	if strings.ContainsAny(conf, " \t\n") {
		t.Skipf("temp dir %q has a space: runMain's argument list is space-separated", conf)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"=-config "+conf+" -shutdown-grace 5s")
	stderr := new(logbuf.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var status error // valid once exited is closed
	exited := make(chan struct{})
	go func() {
		status = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	// waitLog polls the child's stderr until re matches n times.
	waitLog := func(re *regexp.Regexp, n int) [][]string {
		t.Helper()
		for deadline := time.Now().Add(waitFor); ; {
			if m := re.FindAllStringSubmatch(stderr.String(), -1); len(m) >= n {
				return m
			}
			select {
			case <-exited:
				t.Fatalf("child exited (%v) before its log matched %q; stderr:\n%s", status, re, stderr)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("child's log did not match %q within %v; stderr:\n%s", re, waitFor, stderr)
			}
		}
	}

	m := waitLog(regexp.MustCompile(`msg="relay listening" addr=(\S+) .*reload=(\S+)`), 1)[0]
	addr := m[1]
	if m[2] != "SIGHUP" {
		t.Errorf("listening line says reload=%s; want SIGHUP", m[2])
	}
	live := dialLine(t, addr)
	if got, err := live.ask("one"); err != nil || got != "A: one" {
		t.Fatalf("held session: got %q, %v; want \"A: one\"; stderr:\n%s", got, err, stderr)
	}

	rewrite(t, conf, "listen 127.0.0.1:0\nupstream "+b.addr()+"\nbalance random\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
	waitLog(regexp.MustCompile(`msg="relay reloaded" upstream=`+regexp.QuoteMeta(b.addr())+` balance=random`), 1)
	if got, err := live.ask("two"); err != nil || got != "A: two" {
		t.Fatalf("held session after the reload: got %q, %v; want \"A: two\"; stderr:\n%s", got, err, stderr)
	}
	if name, err := servedBy(t, addr, "new"); err != nil || name != "B" {
		t.Fatalf("new session after the reload: served by %q, %v; want B; stderr:\n%s", name, err, stderr)
	}
	live.c.Close()

	// SIGTERM, resent until the child exits: its signal actor may not be
	// registered yet (see childMain).
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
wait:
	for deadline := time.Now().Add(waitFor); ; {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("SIGTERM: %v", err)
		}
		select {
		case <-exited:
			break wait
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exit within %v of SIGTERM; stderr:\n%s", waitFor, stderr)
		}
	}
	if status != nil {
		t.Errorf("exit after SIGHUP, then SIGTERM: got %v; want status 0; stderr:\n%s", status, stderr)
	}
	if !strings.Contains(stderr.String(), `msg="relay stopped"`) {
		t.Errorf("stderr lacks \"relay stopped\"; got:\n%s", stderr)
	}
}
