package pool

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestReuseMostRecentFirst(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})

	a, b := mustGet(t, p), mustGet(t, p)
	aAddr, bAddr := a.Conn().LocalAddr().String(), b.Conn().LocalAddr().String()
	for _, l := range []Lease{a, b} {
		if l.Source() != SourceDial {
			t.Errorf("first hand-outs: got source %v; want dial", l.Source())
		}
		roundTrip(t, l.Conn(), "hi")
		if out := l.Release(clean); out != KeptUsed {
			t.Fatalf("Release: got %v; want kept-used", out)
		}
	}
	for _, want := range []string{bAddr, aAddr} {
		l := mustGet(t, p)
		if l.Source() != SourceReused {
			t.Errorf("got source %v; want reused", l.Source())
		}
		if got := l.Conn().LocalAddr().String(); got != want {
			t.Errorf("got conn %s; want the most recently used, %s", got, want)
		}
		if got := roundTrip(t, l.Conn(), "again"); got != "again" {
			t.Errorf("reply: got %q; want %q", got, "again")
		}
		defer l.Release(clean)
	}
	st := p.Stats()
	if st.GetDial != 2 || st.GetReused != 2 || st.InUse != 2 || st.Open != 2 {
		t.Errorf("stats: got %+v; want 2 dials, 2 reused, 2 in use, 2 open", st)
	}
}

// Regression: the naive pool this design replaces released one conn from
// both copy goroutines, so it entered the pool twice and two clients later
// shared it.
func TestDoubleReleaseIsNoop(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})

	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	if out := l.Release(clean); out != KeptUsed {
		t.Fatalf("first Release: got %v; want kept-used", out)
	}
	if out := l.Release(clean); out != OutcomeNone {
		t.Fatalf("second Release: got %v; want none", out)
	}
	if c := l.Conn(); c != nil {
		t.Errorf("Conn after Release: got %v; want nil", c)
	}
	if st := p.Stats(); st.IdleUsed != 1 || st.Open != 1 {
		t.Errorf("stats: got %d idle used, %d open; want 1 and 1", st.IdleUsed, st.Open)
	}
	// Both hand-outs now must be different conns.
	a, b := mustGet(t, p), mustGet(t, p)
	if a.Conn() == b.Conn() {
		t.Fatal("one conn handed to two callers")
	}
	a.Release(clean)
	b.Release(clean)
}

func TestReleaseOfStaleCopyIsNoop(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})

	first := mustGet(t, p)
	stale := first // a copy kept by mistake
	roundTrip(t, first.Conn(), "x")
	first.Release(clean)

	second := mustGet(t, p)
	if second.Source() != SourceReused {
		t.Fatalf("got source %v; want reused (the same conn)", second.Source())
	}
	if out := stale.Release(Verdict{}); out != OutcomeNone {
		t.Fatalf("Release of a stale copy: got %v; want none", out)
	}
	if stale.Conn() != nil {
		t.Error("a stale copy still reaches the conn")
	}
	if got := roundTrip(t, second.Conn(), "mine"); got != "mine" {
		t.Errorf("got %q; want %q", got, "mine")
	}
	if out := second.Release(clean); out != KeptUsed {
		t.Errorf("Release: got %v; want kept-used", out)
	}
	var zero Lease
	if zero.Release(clean) != OutcomeNone || zero.Conn() != nil {
		t.Error("the zero Lease is not inert")
	}
}

func TestReuseNever(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	// MaxIdle makes room for a fresh conn beyond Spares (none here).
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: 1})

	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	if out := l.Release(clean); out != ClosedNotClean {
		t.Errorf("used conn: got %v; want closed-not-clean", out)
	}
	// An untouched conn went nowhere: it comes back as a spare.
	l = mustGet(t, p)
	if out := l.Release(Verdict{}); out != KeptFresh {
		t.Errorf("untouched conn: got %v; want kept-fresh", out)
	}
	l = mustGet(t, p)
	if l.Source() != SourceSpare {
		t.Errorf("got source %v; want spare", l.Source())
	}
	if got := roundTrip(t, l.Conn(), "fresh"); got != "fresh" {
		t.Errorf("got %q", got)
	}
	l.Release(clean)
	if st := p.Stats(); st.Closed[ClosedNotClean] != 2 || st.Open != 0 {
		t.Errorf("stats: got %d closed-not-clean, %d open; want 2 and 0", st.Closed[ClosedNotClean], st.Open)
	}
}

func TestNotCleanCloses(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	if out := l.Release(Verdict{Used: true}); out != ClosedNotClean {
		t.Errorf("got %v; want closed-not-clean", out)
	}
	eventually(t, "the upstream to see the close", func() bool { return up.Open() == 0 })
}

func TestGreetingReachesFirstClient(t *testing.T) {
	t.Parallel()
	const hello = "220 hello\n"
	greeter := func(c net.Conn) {
		io.WriteString(c, hello)
		echo(c)
	}
	for _, spares := range []int{0, 1} {
		up := startUpstream(t, greeter)
		p := newPool(t, Config{Addr: up.Addr(), Spares: spares, MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean})
		if spares > 0 {
			// Let the greeting arrive on the spare before it is handed out.
			eventually(t, "a spare with its greeting", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return len(p.fresh) == 1 && (!canPeek || p.fresh[0].peek() == peekData)
			})
		}
		l := mustGet(t, p)
		want := SourceDial
		if spares > 0 {
			want = SourceSpare
		}
		if l.Source() != want {
			t.Errorf("spares %d: got source %v; want %v", spares, l.Source(), want)
		}
		l.Conn().SetDeadline(time.Now().Add(10 * time.Second))
		got, err := readLine(l.Conn())
		if err != nil || got != hello {
			t.Errorf("spares %d: got greeting %q, %v; want %q", spares, got, err, hello)
		}
		if got := roundTrip(t, l.Conn(), "x"); got != "x" {
			t.Errorf("got %q", got)
		}
		l.Release(clean)
		if st := p.Stats(); st.Closed[ClosedStale] != 0 {
			t.Errorf("spares %d: a greeting was taken for stale bytes", spares)
		}
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p, err := New(Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, Spares: 1, MaxOpen: 2})
	if err != nil {
		t.Fatal(err)
	}
	idle := mustGet(t, p)
	roundTrip(t, idle.Conn(), "x")
	idle.Release(clean)
	inUse := mustGet(t, p)
	eventually(t, "pool full", func() bool { return p.Stats().Open == 2 })
	third := mustGet(t, p) // the spare, or the idle one: both slots taken now

	waitErr := make(chan error, 1)
	go func() {
		_, err := p.Get(context.Background())
		waitErr <- err
	}()
	eventually(t, "a waiter", func() bool { return p.Stats().Waiting == 1 })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Errorf("waiter: got %v; want ErrClosed", err)
	}
	if _, err := p.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: got %v; want ErrClosed", err)
	}
	if out := inUse.Release(clean); out != ClosedPoolClosed {
		t.Errorf("Release after Close: got %v; want closed-pool-closed", out)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st := p.Stats()
	if st.Open != 1 || st.InUse != 1 {
		t.Errorf("stats: got %d open, %d in use; want the one unreleased lease", st.Open, st.InUse)
	}
	third.Release(clean)
	if st := p.Stats(); st.Open != 0 || st.Closed[ClosedPoolClosed] != 2 {
		t.Errorf("stats: got %d open, %d closed-pool-closed; want 0 and 2", st.Open, st.Closed[ClosedPoolClosed])
	}
	if !strings.Contains(ErrClosed.Error(), "closed") {
		t.Error(ErrClosed)
	}
}

func TestCloseClosesIdleNow(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p, err := New(Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, Spares: 2})
	if err != nil {
		t.Fatal(err)
	}
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	l.Release(clean)
	eventually(t, "spares", func() bool { return p.Stats().IdleFresh == 2 })
	p.Close()
	if st := p.Stats(); st.Open != 0 || st.Closed[ClosedPoolClosed] != 3 {
		t.Errorf("stats: got %d open, %d closed-pool-closed; want 0 and 3", st.Open, st.Closed[ClosedPoolClosed])
	}
	eventually(t, "the upstream to see every close", func() bool { return up.Open() == 0 })
}
