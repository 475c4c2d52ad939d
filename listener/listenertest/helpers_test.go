package listenertest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/loopback"
)

// server is a real upstream on loopback, run by a test.
type server = loopback.Server

func startServer(tb testing.TB, handle func(c net.Conn)) *server {
	tb.Helper()
	return loopback.Start(tb, handle)
}

// echo copies everything back, and passes a FIN back too.
func echo(c net.Conn) {
	io.Copy(c, c)
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
}

// lineEcho answers each line with the same line.
func lineEcho(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
	}
}

// recordingServer starts an upstream that reads what its first client
// sends, until EOF or for 10 s. The returned func waits for that, failing
// the test after 15 s rather than hanging it.
func recordingServer(t *testing.T) (*server, func() []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	srv := startServer(t, func(c net.Conn) {
		data, _ := readAll(c, 10*time.Second)
		select {
		case got <- data:
		default: // a second client: only the first is recorded
		}
	})
	return srv, func() []byte {
		t.Helper()
		select {
		case data := <-got:
			return data
		case <-time.After(15 * time.Second):
			t.Fatal("the upstream got no client within 15 s")
			return nil
		}
	}
}

// newEcho starts a line echo server and a forwarder in front of it.
func newEcho(t *testing.T, opts ...Option) (*Forwarder, *server) {
	t.Helper()
	srv := startServer(t, lineEcho)
	return New(t, srv.Addr(), opts...), srv
}

func dial(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// exchange writes line and reads one line back within timeout.
func exchange(c net.Conn, line string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := c.Read(one)
		if n > 0 {
			b = append(b, one[0])
			if one[0] == '\n' {
				return string(b), nil
			}
		}
		if err != nil {
			return string(b), err
		}
	}
}

func ctxFor(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// isTimeout reports whether err is a deadline timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isReset reports whether err says the peer reset the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}

// needLinux skips tests that depend on Linux's loopback behaviour.
func needLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux loopback behaviour")
	}
}

// readAll reads until EOF or an error, within timeout.
func readAll(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	return io.ReadAll(c)
}

// waitUntil polls cond every 5 ms until it holds or 10 s pass.
func waitUntil(cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for a condition")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
