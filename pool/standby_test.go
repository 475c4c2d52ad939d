package pool

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestSetStandby: standby closes the idle spares and used conns
// (ClosedStandby), dials no spare, keeps nothing released, and Get still
// works; leaving standby refills the spares.
func TestSetStandby(t *testing.T) {
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), Spares: 2, MaxIdle: 4, Reuse: ReuseIfClean})
	eventually(t, "2 spares", func() bool { st := p.Stats(); return st.IdleFresh == 2 && st.Dialing == 0 })
	used := mustGet(t, p)
	roundTrip(t, used.Conn(), "x")
	if out := used.Release(clean); out != KeptUsed {
		t.Fatalf("Release: got %v; want kept-used", out)
	}
	eventually(t, "the spares refilled", func() bool { st := p.Stats(); return st.IdleFresh == 2 && st.Dialing == 0 })

	p.SetStandby(true)
	st := p.Stats()
	if st.IdleFresh != 0 || st.IdleUsed != 0 || st.Closed[ClosedStandby] != 3 {
		t.Fatalf("after SetStandby(true): %d spares, %d used idle, %d closed-standby; want 0, 0, 3", st.IdleFresh, st.IdleUsed, st.Closed[ClosedStandby])
	}
	eventually(t, "the server to see the conns closed", func() bool { return up.Open() == 0 })
	dials := st.Dials

	// Get dials for itself; what is released is closed, not kept.
	l := mustGet(t, p)
	if l.Source() != SourceDial {
		t.Errorf("Get in standby: source %v; want dial", l.Source())
	}
	roundTrip(t, l.Conn(), "standby")
	if out := l.Release(clean); out != ClosedStandby {
		t.Errorf("Release in standby: got %v; want closed-standby", out)
	}
	l = mustGet(t, p)
	if out := l.Release(Verdict{}); out != ClosedStandby {
		t.Errorf("untouched Release in standby: got %v; want closed-standby", out)
	}
	p.SetStandby(true) // twice is a no-op
	// No spare is dialed: give the keeper time to do it wrongly.
	time.Sleep(100 * time.Millisecond)
	st = p.Stats()
	if st.Dials != dials+2 || st.IdleFresh != 0 || st.Open != 0 {
		t.Fatalf("in standby: %d dials (want %d, the Gets' own), %d spares, %d open; want no spares", st.Dials, dials+2, st.IdleFresh, st.Open)
	}

	p.SetStandby(false)
	eventually(t, "the spares refilled after standby", func() bool { return p.Stats().IdleFresh == 2 })
	l = mustGet(t, p)
	if l.Source() != SourceSpare {
		t.Errorf("Get after standby: source %v; want spare", l.Source())
	}
	if out := l.Release(Verdict{}); out != KeptFresh {
		t.Errorf("untouched Release after standby: got %v; want kept-fresh", out)
	}
}

// TestSetStandbyGivesToWaiter: in standby a conn released while a caller
// waits for MaxOpen goes to that caller, not closed.
func TestSetStandbyGivesToWaiter(t *testing.T) {
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxOpen: 1, MaxIdle: 1, Reuse: ReuseIfClean})
	p.SetStandby(true)
	l := mustGet(t, p)
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l2, err := p.Get(ctx)
		if err == nil {
			_, err = exchange(l2.Conn(), "second")
			l2.Release(clean)
		}
		got <- err
	}()
	eventually(t, "the caller to wait", func() bool { return p.Stats().Waiting == 1 })
	roundTrip(t, l.Conn(), "first")
	if out := l.Release(clean); out != KeptUsed {
		t.Errorf("Release with a waiter in standby: got %v; want kept-used (handed to the waiter)", out)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestSetStandbyAfterClose: SetStandby on a closed pool does nothing.
func TestSetStandbyAfterClose(t *testing.T) {
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), Spares: 1})
	p.Close()
	p.SetStandby(true)
	p.SetStandby(false)
	if _, err := p.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: got %v; want ErrClosed", err)
	}
}

// TestOnDial: OnDial sees every dial, a spare's or a caller's, with its
// error.
func TestOnDial(t *testing.T) {
	var mu sync.Mutex
	var ok, failed int
	var last error
	onDial := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			ok++
		} else {
			failed++
			last = err
		}
	}
	counts := func() (int, int, error) {
		mu.Lock()
		defer mu.Unlock()
		return ok, failed, last
	}

	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), Spares: 2, OnDial: onDial})
	eventually(t, "2 spares", func() bool { return p.Stats().IdleFresh == 2 })
	var held []Lease
	for range 4 { // 2 spares, then dials of their own, and refills
		held = append(held, mustGet(t, p))
	}
	eventually(t, "the refills", func() bool { st := p.Stats(); return st.IdleFresh == 2 && st.Dialing == 0 })
	for _, l := range held {
		l.Release(Verdict{})
	}
	n, bad, _ := counts()
	if st := p.Stats(); uint64(n) != st.Dials || bad != 0 {
		t.Errorf("OnDial: %d successes, %d failures; want %d (Stats.Dials), 0", n, bad, st.Dials)
	}

	// A dial that fails is reported with its error, the same Get returns.
	dead := startUpstream(t, echo)
	addr := dead.Addr()
	dead.Close()
	p.Close() // no more dials of p's (Close waits for them) to race the reset
	mu.Lock()
	ok, failed, last = 0, 0, nil
	mu.Unlock()
	q := newPool(t, Config{Addr: addr, OnDial: onDial})
	_, err := q.Get(context.Background())
	if err == nil {
		t.Fatal("Get from a closed port: got nil error")
	}
	n, bad, last = counts()
	if n != 0 || bad != 1 || last == nil || !errors.Is(err, last) {
		t.Errorf("OnDial after a refused dial: %d ok, %d failed, last %v; Get said %v", n, bad, last, err)
	}
}

// TestOnReleaseOncePerRelease: OnRelease sees each released lease's
// verdict once, not a second Release of it, nor a stale copy's.
func TestOnReleaseOncePerRelease(t *testing.T) {
	var mu sync.Mutex
	var seen []Verdict
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxIdle: 2, Reuse: ReuseIfClean, OnRelease: func(v Verdict) {
		mu.Lock()
		seen = append(seen, v)
		mu.Unlock()
	}})
	failed := Verdict{Used: true, UpstreamFailed: true}
	l := mustGet(t, p)
	roundTrip(t, l.Conn(), "x")
	l.Release(clean)
	if out := l.Release(failed); out != OutcomeNone {
		t.Errorf("second Release: got %v; want none", out)
	}
	l2 := mustGet(t, p) // the same conn, reused: l is a stale copy now
	l.Release(failed)
	l2.Release(failed)
	Lease{}.Release(clean)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != clean || seen[1] != failed {
		t.Errorf("OnRelease saw %+v; want the clean verdict, then the failed one", seen)
	}
}
