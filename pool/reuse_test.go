package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// A server that closes idle conns must never fail a client: Get finds
// the dead ones with its peek and moves on.
//
// The server closes them when the test says so, after each round's
// releases: on loopback its FIN is queued on the client's socket when
// Close returns. (This used to close them on a 40 ms read deadline, which
// a busy machine could let expire in the middle of a client's exchange,
// so that the exchange itself, not Get, met the close.)
func TestDeadIdleConnsNeverFailAClient(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, serveLines(func(_ net.Conn, line string) string { return line }))
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, Spares: 2})

	for round := range 3 {
		var leases []Lease
		for i := range 3 {
			l := mustGet(t, p)
			msg := strings.Repeat("x", round*3+i+1)
			if got := roundTrip(t, l.Conn(), msg); got != msg {
				t.Fatalf("round %d: got %q; want %q", round, got, msg)
			}
			leases = append(leases, l)
		}
		for _, l := range leases {
			l.Release(clean)
		}
		up.CloseConns() // every idle conn, used or spare, is now dead
	}
	if st := p.Stats(); st.Closed[ClosedDead] == 0 {
		t.Errorf("stats: got no closed-dead; want the idle conns the server closed: %+v", st)
	}
}

func TestStaleAtRelease(t *testing.T) {
	t.Parallel()
	// "twice" gets two replies in one write: the client reads one.
	up := startUpstream(t, serveLines(func(_ net.Conn, line string) string {
		if line == "twice\n" {
			return "one\ntwo\n"
		}
		return line
	}))
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})
	l := mustGet(t, p)
	if got := roundTrip(t, l.Conn(), "twice"); got != "one" {
		t.Fatalf("got %q; want %q", got, "one")
	}
	if out := l.Release(clean); out != ClosedStale {
		t.Errorf("Release with a reply pending: got %v; want closed-stale", out)
	}
	if st := p.Stats(); st.Closed[ClosedStale] != 1 || st.Open != 0 {
		t.Errorf("stats: got %d closed-stale, %d open; want 1 and 0", st.Closed[ClosedStale], st.Open)
	}
}

func TestStaleAtHandOut(t *testing.T) {
	t.Parallel()
	push := make(chan struct{})
	closePush := sync.OnceFunc(func() { close(push) })
	t.Cleanup(closePush) // the server's goroutine ends even if the test fails first
	pushed := make(chan struct{})
	// "push" is answered at once; later, on the test's signal, the server
	// writes again on the idle conn.
	up := startUpstream(t, serveLines(func(c net.Conn, line string) string {
		if line == "push\n" {
			io.WriteString(c, "ok\n")
			go func() {
				<-push
				io.WriteString(c, "late\n")
				close(pushed)
			}()
			return ""
		}
		return line
	}))
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})

	l := mustGet(t, p)
	if got := roundTrip(t, l.Conn(), "push"); got != "ok" {
		t.Fatalf("got %q", got)
	}
	if out := l.Release(clean); out != KeptUsed {
		t.Fatalf("Release: got %v; want kept-used", out)
	}
	closePush()
	<-pushed
	eventually(t, "the late bytes to land", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		// The sweep may have closed it as stale first: as good.
		return len(p.used) == 0 || p.used[0].peek() == peekData
	})

	l = mustGet(t, p)
	defer l.Release(clean)
	if l.Source() == SourceReused {
		t.Fatal("a used conn with unread bytes was handed out")
	}
	if got := roundTrip(t, l.Conn(), "mine"); got != "mine" {
		t.Errorf("got %q; want %q", got, "mine")
	}
	if st := p.Stats(); st.Closed[ClosedStale] != 1 {
		t.Errorf("stats: got %d closed-stale; want 1", st.Closed[ClosedStale])
	}
}

func TestDeadAtRelease(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, serveLines(func(c net.Conn, line string) string {
		if line == "quit\n" {
			io.WriteString(c, "bye\n")
			c.Close()
		}
		return line
	}))
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})
	l := mustGet(t, p)
	if got := roundTrip(t, l.Conn(), "quit"); got != "bye" {
		t.Fatalf("got %q", got)
	}
	eventually(t, "the server's close", func() bool { return up.Open() == 0 })
	if out := l.Release(clean); out != ClosedDead {
		t.Errorf("Release after the server's FIN: got %v; want closed-dead", out)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, IdleTimeout: 30 * time.Millisecond})
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	if out := l.Release(clean); out != KeptUsed {
		t.Fatalf("Release: got %v; want kept-used", out)
	}
	eventually(t, "the sweep to close the idle conn", func() bool {
		return p.Stats().Closed[ClosedIdle] == 1
	})
	if st := p.Stats(); st.IdleUsed != 0 || st.Open != 0 {
		t.Errorf("stats: got %d idle used, %d open; want 0 and 0", st.IdleUsed, st.Open)
	}
	l = mustGet(t, p)
	if l.Source() != SourceDial {
		t.Errorf("got source %v; want dial", l.Source())
	}
	l.Release(clean)
}

func TestMaxLifetimeAtRelease(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, MaxLifetime: 50 * time.Millisecond})
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	time.Sleep(100 * time.Millisecond)
	if out := l.Release(clean); out != ClosedLifetime {
		t.Errorf("got %v; want closed-lifetime", out)
	}
}

func TestMaxIdle(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), Reuse: ReuseIfClean, MaxIdle: 1})
	a, b := mustGet(t, p), mustGet(t, p)
	roundTrip(t, a.Conn(), "a")
	roundTrip(t, b.Conn(), "b")
	if out := a.Release(clean); out != KeptUsed {
		t.Errorf("first: got %v; want kept-used", out)
	}
	if out := b.Release(clean); out != ClosedFull {
		t.Errorf("second: got %v; want closed-full", out)
	}
}

func TestResetFailureCloses(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	tests := []struct {
		name  string
		reset func(context.Context, net.Conn) error
	}{
		{"error", func(context.Context, net.Conn) error { return errors.New("nope") }},
		// Ignores ctx and blocks on a read nothing answers: the pool's
		// deadline backstop must end it.
		{"hang", func(_ context.Context, c net.Conn) error {
			_, err := c.Read(make([]byte, 1))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfVerified, Reset: Reset{Func: tt.reset},
				ResetTimeout: 50 * time.Millisecond})
			l := mustGet(t, p)
			roundTrip(t, l.Conn(), "x")
			if out := l.Release(clean); out != ClosedResetFailed {
				t.Errorf("got %v; want closed-reset-failed", out)
			}
			if st := p.Stats(); st.Open != 0 || st.Closed[ClosedResetFailed] != 1 {
				t.Errorf("stats: got %d open, %d closed-reset-failed; want 0 and 1", st.Open, st.Closed[ClosedResetFailed])
			}
		})
	}
}

func TestResetRunsAndClearsDeadlines(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	var mu sync.Mutex
	calls := 0
	reset := func(ctx context.Context, c net.Conn) error {
		mu.Lock()
		calls++
		mu.Unlock()
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline on the Reset ctx")
		}
		c.SetDeadline(time.Unix(1, 0)) // left behind, already past
		return nil
	}
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfVerified, Reset: Reset{Func: reset}})
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	if out := l.Release(clean); out != KeptUsed {
		t.Fatalf("got %v; want kept-used", out)
	}
	time.Sleep(10 * time.Millisecond)
	l = mustGet(t, p)
	if got := roundTrip(t, l.Conn(), "y"); got != "y" { // fails on a stale deadline
		t.Errorf("got %q", got)
	}
	l.Release(Verdict{Used: true}) // not clean: no Reset
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("Reset ran %d times; want 1", calls)
	}
}
