package listener

import (
	"strings"
	"testing"

	"github.com/relaykit/relay/pool"
)

// TestSessionsShowBytes: a live session's state counts the bytes moved
// so far, each way.
func TestSessionsShowBytes(t *testing.T) {
	up := startServer(t, echo)
	l := startProxy(t, pool.Config{Addr: up.Addr()}, Config{})
	c := dial(t, l.Addr().String())
	defer c.Close()
	req := strings.Repeat("x", 1000) + "\n"
	if got, err := exchange(c, req); err != nil || got != req {
		t.Fatalf("exchange: got %d bytes, %v", len(got), err)
	}
	waitFor(t, "both directions counted", func() bool {
		s := l.Sessions()
		return len(s) == 1 && s[0].BytesToUpstream == int64(len(req)) && s[0].BytesToClient == int64(len(req))
	})
	if _, err := exchange(c, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second exchange counted", func() bool {
		s := l.Sessions()
		return len(s) == 1 && s[0].BytesToUpstream == 2*int64(len(req)) && s[0].BytesToClient == 2*int64(len(req))
	})
}
