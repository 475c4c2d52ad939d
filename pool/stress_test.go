package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// Many goroutines get and release with random verdicts against a
// counting server. Invariants: sockets open never exceed MaxOpen; a
// client never reads another client's reply; every conn is closed
// exactly once; nothing is left open after Close.
func TestStress(t *testing.T) {
	t.Parallel()
	for _, closeEarly := range []bool{false, true} {
		name := "close after"
		if closeEarly {
			name = "close during"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stress(t, closeEarly)
		})
	}
}

func stress(t *testing.T, closeEarly bool) {
	const (
		workers = 8
		rounds  = 120
		maxOpen = 4
	)
	requirePeekFor(t, ReuseIfClean)
	up := startUpstream(t, echo)
	d := &countingDialer{dial: tcpDial(up.Addr())}
	p, err := New(Config{Dial: d.Dial, Reuse: ReuseIfClean, Spares: 2, MaxOpen: maxOpen, MaxIdle: 3})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var closeOnce sync.Once
	closePool := func() { closeOnce.Do(func() { p.Close() }) }
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				if closeEarly && w == 0 && i == rounds/3 {
					closePool()
				}
				timeout := 10 * time.Second
				if rng.IntN(10) == 0 {
					timeout = time.Duration(rng.IntN(2000)) * time.Microsecond
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				l, err := p.Get(ctx)
				cancel()
				if errors.Is(err, ErrClosed) {
					if !closeEarly {
						t.Errorf("worker %d: ErrClosed before Close", w)
					}
					return
				}
				if errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				if err != nil {
					t.Errorf("worker %d: Get: %v", w, err)
					return
				}
				if st := p.Stats(); st.Open > maxOpen {
					t.Errorf("Stats.Open %d > MaxOpen %d", st.Open, maxOpen)
				}
				c := l.Conn()
				id := fmt.Sprintf("w%d-%d", w, i)
				var v Verdict
				switch rng.IntN(4) {
				case 0: // untouched
					v = Verdict{Clean: rng.IntN(2) == 0}
				case 1: // request sent, client gone before the reply
					io.WriteString(c, id+"\n")
					v = Verdict{Used: true}
				default: // a full exchange
					got, err := exchange(c, id)
					if err != nil {
						t.Errorf("%s (source %v): %v", id, l.Source(), err)
					} else if got != id {
						t.Errorf("%s (source %v) read another client's reply %q", id, l.Source(), got)
					}
					v = Verdict{Used: true, Clean: err == nil && rng.IntN(4) != 0}
				}
				out := l.Release(v)
				if out == OutcomeNone {
					t.Errorf("%s: first Release returned none", id)
				}
				if l.Release(v) != OutcomeNone {
					t.Errorf("%s: second Release acted", id)
				}
			}
		}()
	}
	wg.Wait()
	closePool()

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.maxLive > maxOpen {
		t.Errorf("open sockets peaked at %d; want at most MaxOpen %d", d.maxLive, maxOpen)
	}
	if d.live != 0 {
		t.Errorf("%d conns open after Close; want 0", d.live)
	}
	var bad []string
	for i, c := range d.conns {
		if n := c.closes.Load(); n != 1 {
			bad = append(bad, fmt.Sprintf("conn %d closed %d times", i, n))
		}
	}
	if len(bad) > 0 {
		t.Errorf("every conn must be closed exactly once:\n%s", strings.Join(bad, "\n"))
	}
	st := p.Stats()
	if st.Open != 0 || st.InUse != 0 || st.IdleFresh+st.IdleUsed != 0 || st.Dialing != 0 || st.Waiting != 0 {
		t.Errorf("stats after Close: got %+v; want all zero gauges", st)
	}
	var closed uint64
	for _, n := range st.Closed {
		closed += n
	}
	if closed != uint64(len(d.conns)) {
		t.Errorf("stats count %d closes; the dialer saw %d conns", closed, len(d.conns))
	}
	if !closeEarly && st.GetReused == 0 {
		t.Errorf("no conn was ever reused: %+v", st)
	}
	t.Logf("%d conns; stats %+v", len(d.conns), st)
}
