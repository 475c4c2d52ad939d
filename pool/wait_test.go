package pool

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Callers beyond MaxOpen wait in FIFO order; one that gives up returns
// ctx.Err() and leaves the pool intact.
func TestMaxOpenFIFO(t *testing.T) {
	t.Parallel()
	for _, policy := range []Policy{ReuseIfClean, ReuseNever} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			up := startUpstream(t, echo)
			p := newPool(t, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: policy, MaxOpen: 1})
			holder := mustGet(t, p)

			var (
				mu    sync.Mutex
				order []int
				wg    sync.WaitGroup
			)
			errs := make([]error, 4)
			ctxs := make([]context.CancelFunc, 4)
			for i := range 4 {
				ctx, cancel := context.WithCancel(context.Background())
				ctxs[i] = cancel
				defer cancel()
				wg.Add(1)
				go func() {
					defer wg.Done()
					l, err := p.Get(ctx)
					errs[i] = err
					if err != nil {
						return
					}
					mu.Lock()
					order = append(order, i)
					mu.Unlock()
					if _, err := exchange(l.Conn(), "hi"); err != nil {
						t.Errorf("waiter %d: %v", i, err)
					}
					l.Release(clean)
				}()
				// Queue them one by one, so their order is known.
				eventually(t, "the waiter to queue", func() bool { return p.Stats().Waiting == i+1 })
			}
			ctxs[1]() // waiter 1 gives up
			eventually(t, "waiter 1 to leave", func() bool { return p.Stats().Waiting == 3 })

			roundTrip(t, holder.Conn(), "x")
			holder.Release(clean)
			wg.Wait()

			if !errors.Is(errs[1], context.Canceled) {
				t.Errorf("canceled waiter: got %v; want context.Canceled", errs[1])
			}
			for _, i := range []int{0, 2, 3} {
				if errs[i] != nil {
					t.Errorf("waiter %d: %v", i, errs[i])
				}
			}
			if want := []int{0, 2, 3}; !slices.Equal(order, want) {
				t.Errorf("served in order %v; want %v", order, want)
			}
			st := p.Stats()
			if st.Waiting != 0 || st.InUse != 0 || st.Open > 1 || st.WaitCount != 4 || st.WaitDuration <= 0 {
				t.Errorf("stats: got %+v; want no waiter, none in use, at most 1 open, 4 waits", st)
			}
			l := mustGet(t, p) // the pool still works
			roundTrip(t, l.Conn(), "after")
			l.Release(clean)
		})
	}
}

func TestWaitTimeout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), MaxOpen: 1, MaxIdle: 1})
	holder := mustGet(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v; want context.DeadlineExceeded", err)
	}
	holder.Release(Verdict{})
	if st := p.Stats(); st.Waiting != 0 || st.IdleFresh != 1 || st.Open != 1 {
		t.Errorf("stats: got %+v; want the untouched conn back as a spare", st)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a done ctx: got %v; want context.Canceled", err)
	}
}

// gatedDial returns a dial func for addr that blocks until release is
// closed, or fails when its ctx ends (Close on a failed test: do not hang).
func gatedDial(addr string) (dial func(context.Context) (net.Conn, error), release chan struct{}) {
	release = make(chan struct{})
	dial = func(ctx context.Context) (net.Conn, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return tcpDial(addr)(ctx)
	}
	return dial, release
}

// A dial runs under its own timeout: a conn that lands after its caller
// gave up is kept as a spare, not wasted, while max(Spares, MaxIdle)
// leaves room.
func TestDialOutlivesCaller(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	dial, release := gatedDial(up.Addr())
	p := newPool(t, Config{Dial: dial, MaxIdle: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v; want context.DeadlineExceeded", err)
	}
	if st := p.Stats(); st.Dialing != 1 || st.Open != 1 {
		t.Errorf("stats while dialing: got %+v; want 1 dial in flight", st)
	}
	close(release)
	eventually(t, "the late conn to become a spare", func() bool { return p.Stats().IdleFresh == 1 })
	l := mustGet(t, p)
	if l.Source() != SourceSpare {
		t.Errorf("got source %v; want spare", l.Source())
	}
	roundTrip(t, l.Conn(), "x")
	l.Release(clean)
	if st := p.Stats(); st.Dials != 1 {
		t.Errorf("got %d dials; want 1", st.Dials)
	}
}

// A late conn goes to the next waiter when there is one.
func TestDialOutlivesCallerServesNextWaiter(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	dial, release := gatedDial(up.Addr())
	p := newPool(t, Config{Dial: dial, MaxOpen: 1})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx)
		first <- err
	}()
	eventually(t, "a dial in flight", func() bool { return p.Stats().Dialing == 1 })
	second := make(chan Lease, 1)
	go func() {
		l, err := p.Get(context.Background())
		if err != nil {
			t.Error(err)
		}
		second <- l
	}()
	eventually(t, "a waiter", func() bool { return p.Stats().Waiting == 1 })
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first: got %v; want context.Canceled", err)
	}
	close(release)
	l := <-second
	if l.Source() != SourceSpare {
		t.Errorf("second: got source %v; want spare (the first caller's dial)", l.Source())
	}
	roundTrip(t, l.Conn(), "x")
	l.Release(clean)
	if st := p.Stats(); st.Dials != 1 {
		t.Errorf("got %d dials; want 1", st.Dials)
	}
}

func TestDialError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newPool(t, Config{Addr: addr, MaxOpen: 1})
	for range 2 { // the failed dial must free its slot
		_, err = p.Get(context.Background())
		var op *net.OpError
		if err == nil || !strings.HasPrefix(err.Error(), "pool: dial: ") || !errors.As(err, &op) {
			t.Fatalf("got %v; want a wrapped *net.OpError", err)
		}
	}
	if st := p.Stats(); st.DialErrors != 2 || st.Open != 0 {
		t.Errorf("stats: got %d dial errors, %d open; want 2 and 0", st.DialErrors, st.Open)
	}
}

// Close must not wait out DialTimeout for a dial in flight.
func TestCloseCancelsDial(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	dial := func(ctx context.Context) (net.Conn, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p, err := New(Config{Dial: dial, DialTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := p.Get(context.Background())
		got <- err
	}()
	<-started
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the dial's own timeout")
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Errorf("Get: got %v; want ErrClosed", err)
	}
}
