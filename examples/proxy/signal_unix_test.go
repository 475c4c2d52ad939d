//go:build unix

package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
)

// childMain runs main in the child process of runMain. A SIGTERM that
// arrives before run's signal actor is registered must not kill the
// child with the default action, so the child catches it from the start
// and the tests resend it until the child exits.
func childMain() {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM)
	main()
}

// TestMainSIGTERM runs the program in a child process, keeps a session
// open, sends SIGTERM, and checks that the program drains for
// -shutdown-grace, cuts the session, and exits 0.
func TestMainSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"=-listen 127.0.0.1:0 -shutdown-grace 500ms")
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

	var addr string
	for deadline := time.Now().Add(waitFor); addr == ""; {
		if m := listeningRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"relay listening\" line within %v; stderr:\n%s", waitFor, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A session in progress when the signal comes.
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	if reply, err := r.ReadString('\n'); err != nil || !strings.HasSuffix(reply, ": before\n") {
		t.Fatalf("reply: got %q, %v; want the echo", reply, err)
	}

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
		t.Errorf("exit after SIGTERM: got %v; want status 0; stderr:\n%s", status, stderr)
	}
	log := stderr.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="relay shutting down" reason="received signal terminated"`),
		regexp.MustCompile(`msg="relay stopped"`),
	} {
		if !want.MatchString(log) {
			t.Errorf("stderr lacks %q; got:\n%s", want, log)
		}
	}
	// The open session was cut when the grace ran out: the client sees
	// the end of the stream rather than hanging.
	if b, err := r.ReadByte(); err == nil {
		t.Errorf("client after shutdown: read %q; want the connection closed", b)
	}
}
