package loopback

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCloseEndsHandlers: Close must close live conns so that a handler
// blocked reading returns, and count what was accepted.
func TestCloseEndsHandlers(t *testing.T) {
	done := make(chan struct{})
	s := Start(t, func(c net.Conn) {
		io.Copy(io.Discard, c) // blocks until Close closes c
		close(done)
	})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Accepts() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Accepts: got %d; want 1", s.Accepts())
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	select {
	case <-done:
	default:
		t.Fatal("handler still running after Close")
	}
	s.Close() // twice is fine
}
