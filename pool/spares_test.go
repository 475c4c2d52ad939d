package pool

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestSparesRefill(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	p := newPool(t, Config{Addr: up.Addr(), Spares: 3})
	eventually(t, "3 spares", func() bool { return p.Stats().IdleFresh == 3 })

	var leases []Lease
	for range 3 {
		l := mustGet(t, p)
		if l.Source() != SourceSpare {
			t.Errorf("got source %v; want spare", l.Source())
		}
		leases = append(leases, l)
	}
	eventually(t, "the spares to be refilled", func() bool { return p.Stats().IdleFresh == 3 })
	for _, l := range leases {
		roundTrip(t, l.Conn(), "x")
		l.Release(clean)
	}
	st := p.Stats()
	if st.Dials != 6 || st.GetSpare != 3 || st.Open != 3 {
		t.Errorf("stats: got %+v; want 6 dials, 3 spare hand-outs, 3 open", st)
	}
}

// pipeDialer dials in-memory pipes (usable inside a synctest bubble), or
// fails while down. It counts attempts and closes the far ends at the end.
type pipeDialer struct {
	down     atomic.Bool
	attempts atomic.Int64
	mu       sync.Mutex
	far      []net.Conn
}

func (d *pipeDialer) Dial(ctx context.Context) (net.Conn, error) {
	d.attempts.Add(1)
	if d.down.Load() {
		return nil, errDown
	}
	near, far := net.Pipe()
	d.mu.Lock()
	d.far = append(d.far, far)
	d.mu.Unlock()
	return near, nil
}

func (d *pipeDialer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.far {
		c.Close()
	}
}

// newPipePool starts a pool that dials d (inside the test's bubble, for a
// synctest test); Cleanup closes the pool, then d's far ends.
func newPipePool(t *testing.T, d *pipeDialer, cfg Config) *Pool {
	t.Helper()
	cfg.Dial = d.Dial
	t.Cleanup(d.Close)
	return newPool(t, cfg)
}

// The keeper dials every missing spare at once, up to maxSpareDials.
func TestSparesDialInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		t.Cleanup(d.Close)
		release := make(chan struct{})
		p := newPool(t, Config{Spares: maxSpareDials + 3, Dial: func(ctx context.Context) (net.Conn, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return d.Dial(ctx)
		}})
		synctest.Wait()
		if st := p.Stats(); st.Dialing != maxSpareDials {
			t.Errorf("got %d dials in flight; want %d", st.Dialing, maxSpareDials)
		}
		close(release)
		synctest.Wait()
		if st := p.Stats(); st.IdleFresh != maxSpareDials+3 || st.Dials != maxSpareDials+3 {
			t.Errorf("after the dials: got %d spares from %d dials; want %d from %d",
				st.IdleFresh, st.Dials, maxSpareDials+3, maxSpareDials+3)
		}
	})
}

// After a short outage the spares are back soon after the upstream: a
// batch of dials that all failed counts as one failure for the backoff,
// not as one per dial (which put 16 spares 35 s behind a 1 s outage).
func TestSparesBackSoonAfterOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		d.down.Store(true)
		var logs logBuffer
		const spares = 16
		p := newPipePool(t, d, Config{Spares: spares, Logger: logs.Logger()})
		time.Sleep(time.Second)
		d.down.Store(false)
		up := time.Now()
		// During the outage the backoff reached 400-800 ms at most.
		for p.Stats().IdleFresh < spares && time.Since(up) < time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		if took := time.Since(up); took > 2*time.Second {
			t.Errorf("spares refilled %v after the upstream came back; want at most 2s", took)
		}
		out := logs.String()
		if n := strings.Count(out, `msg="pool: upstream down"`); n != 1 {
			t.Errorf("logged %q %d times; want once:\n%s", "upstream down", n, out)
		}
		if n := strings.Count(out, `msg="pool: upstream recovered"`); n != 1 {
			t.Errorf("logged %q %d times; want once:\n%s", "upstream recovered", n, out)
		}
	})
}

// Close returns while the keeper backs off and its other spare dials
// still report failures: no dial worker blocks on its report.
func TestSparesCloseDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		p, err := New(Config{Spares: maxSpareDials + 10, Dial: func(ctx context.Context) (net.Conn, error) {
			time.Sleep(time.Duration(n.Add(1)) * time.Millisecond) // failures spread over 64 ms
			return nil, errDown
		}})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // part of the batch has failed
		p.Close()                         // a blocked worker would deadlock the bubble
		if st := p.Stats(); st.Open != 0 || st.Dialing != 0 {
			t.Errorf("after Close: got %d open, %d dialing; want 0 and 0", st.Open, st.Dialing)
		}
	})
}

// The counts stay balanced while callers churn through a pool at
// MaxOpen with the keeper's dials in flight.
func TestSparesAccountingUnderChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		p := newPipePool(t, d, Config{Spares: 8, MaxOpen: 12})
		ctx := context.Background()
		for range 200 {
			var leases []Lease
			for range 12 {
				l, err := p.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				leases = append(leases, l)
			}
			for i, l := range leases {
				l.Release(Verdict{Used: i%2 == 0})
			}
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		st := p.Stats()
		if st.Dialing != 0 || st.InUse != 0 || st.Open != st.IdleFresh+st.IdleUsed || st.IdleFresh < 8 {
			t.Errorf("stats after churn: got %+v; want nothing dialing or in use, open = idle, 8 spares", st)
		}
	})
}

// Against a dead upstream the keeper backs off (no dial storm), logs
// once, and recovers by itself when the upstream comes back.
func TestSparesBackoffAndRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		d.down.Store(true)
		var logs logBuffer
		p := newPipePool(t, d, Config{Spares: 2, Logger: logs.Logger()})

		time.Sleep(10 * time.Second)
		// 50 ms doubling to 5 s, jittered within the upper half: 7 to 10
		// attempts in 10 s. A retry loop without backoff makes thousands.
		if n := d.attempts.Load(); n < 5 || n > 15 {
			t.Errorf("dial attempts in 10s against a dead upstream: got %d; want 5 to 15", n)
		}
		if st := p.Stats(); st.IdleFresh != 0 || st.Open != 0 || st.DialErrors != uint64(d.attempts.Load()) {
			t.Errorf("stats while down: got %+v", st)
		}

		d.down.Store(false)
		time.Sleep(backoffMax + time.Second)
		synctest.Wait()
		if st := p.Stats(); st.IdleFresh != 2 {
			t.Errorf("after recovery: got %d spares; want 2", st.IdleFresh)
		}
		out := logs.String()
		if n := strings.Count(out, `msg="pool: upstream down"`); n != 1 {
			t.Errorf("logged %q %d times; want once:\n%s", "upstream down", n, out)
		}
		if n := strings.Count(out, `msg="pool: upstream recovered"`); n != 1 {
			t.Errorf("logged %q %d times; want once:\n%s", "upstream recovered", n, out)
		}
		if !strings.Contains(out, errDown.Error()) {
			t.Errorf("the log does not name the dial error:\n%s", out)
		}
	})
}

// A caller's successful dial cuts the keeper's backoff short.
func TestSparesRecoverOnCallerDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		d.down.Store(true)
		p := newPipePool(t, d, Config{Spares: 1})
		time.Sleep(20 * time.Second) // backoff at its 5 s cap
		d.down.Store(false)
		l, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(Verdict{})
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if st := p.Stats(); st.IdleFresh != 1 {
			t.Errorf("got %d spares 10ms after a successful dial; want 1", st.IdleFresh)
		}
	})
}

func TestSparesReplacedPastLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		p := newPipePool(t, d, Config{Spares: 1, MaxLifetime: time.Second})
		time.Sleep(5*time.Second + 100*time.Millisecond)
		synctest.Wait()
		st := p.Stats()
		if st.Closed[ClosedLifetime] < 4 || st.IdleFresh != 1 || st.Dials != st.Closed[ClosedLifetime]+1 {
			t.Errorf("stats: got %+v; want a spare replaced about every second", st)
		}
	})
}

func TestSparesIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		p := newPipePool(t, d, Config{Spares: 1, IdleTimeout: time.Second})
		time.Sleep(3*time.Second + 100*time.Millisecond)
		synctest.Wait()
		if st := p.Stats(); st.Closed[ClosedIdle] < 2 || st.IdleFresh != 1 {
			t.Errorf("stats: got %+v; want idle spares replaced", st)
		}
	})
}

// Spares never push the pool past MaxOpen, and callers get the spare
// the keeper dials when they wait.
func TestSparesRespectMaxOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		p := newPipePool(t, d, Config{Spares: 2, MaxOpen: 2})
		synctest.Wait()
		a, _ := p.Get(context.Background())
		b, _ := p.Get(context.Background())
		synctest.Wait()
		if st := p.Stats(); st.Open != 2 || st.IdleFresh != 0 {
			t.Errorf("stats: got %+v; want 2 open, no spare", st)
		}
		a.Release(Verdict{Used: true}) // closed: the keeper may dial again
		synctest.Wait()
		if st := p.Stats(); st.Open != 2 || st.IdleFresh != 1 {
			t.Errorf("stats: got %+v; want 2 open, 1 spare", st)
		}
		b.Release(Verdict{Used: true})
	})
}

// Regression: an untouched lease given back must keep its idle age; the
// upstream saw no traffic during the hand-out.
func TestUntouchedKeepsIdleAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		p := newPipePool(t, d, Config{IdleTimeout: time.Second, MaxIdle: 1})
		l, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		if out := l.Release(Verdict{}); out != KeptFresh {
			t.Fatalf("Release: got %v; want kept-fresh", out)
		}
		time.Sleep(700 * time.Millisecond) // 1.4 s since the dial
		synctest.Wait()
		if st := p.Stats(); st.IdleFresh != 0 || st.Closed[ClosedIdle] != 1 {
			t.Errorf("stats: got %+v; want the conn closed as idle", st)
		}
		l, err = p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond)
		if out := l.Release(Verdict{}); out != ClosedIdle {
			t.Errorf("Release of a conn idle past IdleTimeout: got %v; want closed-idle", out)
		}
	})
}
