// Package realserver starts real servers from the system's packages
// (redis-server, memcached) on loopback ports, for relay's tests whose
// behaviour depends on a real server. Each server is stopped in the
// test's Cleanup.
//
// A test whose server is not installed is skipped with a message that
// says what to install, unless the environment variable RequireEnv is
// set (.ci/run sets it, after installing the servers): then it fails.
package realserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
)

// RequireEnv names the environment variable that turns a missing server
// from a skip into a failure.
const RequireEnv = "RELAY_REQUIRE_SERVERS"

// startTimeout bounds how long a server may take to answer after start.
const startTimeout = 10 * time.Second

// Server is a running server process on 127.0.0.1.
type Server struct {
	// Addr is the server's host:port.
	Addr string

	cmd  *exec.Cmd
	out  *logbuf.Buffer
	done chan struct{} // closed when the process has exited
}

// Redis starts redis-server on a free loopback port, with no persistence,
// plus the given config directives (each one "name value ...", as a
// redis.conf line, for example "requirepass s3cret"). It skips the test
// when redis-server is not installed (see RequireEnv).
func Redis(tb testing.TB, directives ...string) *Server {
	tb.Helper()
	bin := lookPath(tb, "redis-server", "redis-server")
	return start(tb, func(port int) *exec.Cmd {
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\ndaemonize no\nlogfile \"\"\n", port)
		for _, d := range directives {
			conf += d + "\n"
		}
		cmd := exec.Command(bin, "-")
		cmd.Stdin = bytes.NewBufferString(conf)
		return cmd
	}, answers("PING\r\n", "+PONG", "-NOAUTH"))
}

// Memcached starts memcached on a free loopback port (TCP only, 64 MiB).
// It skips the test when memcached is not installed (see RequireEnv).
func Memcached(tb testing.TB) *Server {
	tb.Helper()
	bin := lookPath(tb, "memcached", "memcached")
	return start(tb, func(port int) *exec.Cmd {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "64"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses root otherwise
		}
		return exec.Command(bin, args...)
	}, answers("version\r\n", "VERSION "))
}

// answers returns a readiness probe: it sends send and wants a reply
// that starts with one of want.
func answers(send string, want ...string) func(net.Conn) error {
	return func(c net.Conn) error {
		if _, err := io.WriteString(c, send); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		for _, w := range want {
			if strings.HasPrefix(string(buf[:n]), w) {
				return nil
			}
		}
		return fmt.Errorf("%q answered %q, %v", send, buf[:n], err)
	}
}

// lookPath finds a server binary, or skips (or, under RequireEnv, fails)
// the test, naming the Debian package to install.
func lookPath(tb testing.TB, bin, pkg string) string {
	tb.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found on PATH: this test needs a real server (apt-get install %s)", bin, pkg)
	if os.Getenv(RequireEnv) != "" {
		tb.Fatalf("%s; %s is set, so a missing server is a failure", msg, RequireEnv)
	}
	tb.Skip(msg)
	return ""
}

// start runs the command that command builds for a free port until ready
// accepts a conn to it, trying another port when the process exits early
// (its port was taken in between).
func start(tb testing.TB, command func(port int) *exec.Cmd, ready func(net.Conn) error) *Server {
	tb.Helper()
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), out: new(logbuf.Buffer), done: make(chan struct{})}
		s.cmd = command(port)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			tb.Fatalf("start %s: %v", s.cmd.Path, err)
		}
		go func() {
			s.cmd.Wait()
			close(s.done)
		}()
		if lastErr = s.waitReady(ready); lastErr == nil {
			tb.Cleanup(s.stop)
			return s
		}
		s.stop()
	}
	tb.Fatalf("server did not start: %v", lastErr)
	return nil
}

// waitReady polls the server until ready succeeds, the process exits or
// startTimeout passes.
func (s *Server) waitReady(ready func(net.Conn) error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			err = ready(c)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited: %s", s.cmd.Path, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s at %s not ready after %v: %v", s.cmd.Path, s.Addr, startTimeout, err)
		}
	}
}

// stop kills the process and waits for it.
func (s *Server) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// Output returns what the server wrote to stdout and stderr so far.
func (s *Server) Output() string { return s.out.String() }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("realserver: not a TCP address")
	}
	return addr.Port, nil
}
