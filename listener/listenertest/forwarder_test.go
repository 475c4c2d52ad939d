package listenertest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

func TestDownUp(t *testing.T) {
	needLinux(t)
	fw, _ := newEcho(t)
	live := dial(t, fw.Addr())
	if _, err := exchange(live, "before\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}

	fw.Down()
	if _, err := readAll(live, 10*time.Second); !isReset(err) {
		t.Errorf("live session after Down: %v; want a reset", err)
	}
	// The kernel completes the handshake; the forwarder resets the conn
	// at once, which the dial itself may already see.
	if refused, err := net.DialTimeout("tcp", fw.Addr(), 10*time.Second); err == nil {
		got, err := exchange(refused, "while down\n", 10*time.Second)
		refused.Close()
		if err == nil {
			t.Errorf("exchange while down: got %q; want an error", got)
		}
	}
	if err := fw.Wait(ctxFor(t, 10*time.Second), func(c Counts) bool { return c.Refused >= 1 }); err != nil {
		t.Fatal(err)
	}

	fw.Up()
	c := dial(t, fw.Addr())
	if got, err := exchange(c, "after\n", 10*time.Second); got != "after\n" {
		t.Fatalf("exchange after Up: got %q, %v", got, err)
	}
	if c := fw.Counts(); c.Accepted != 2 || c.Refused != 1 {
		t.Errorf("Counts() = %+v; want 2 accepted, 1 refused", c)
	}
}

func TestUnreachable(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		fw, _ := newEcho(t)
		fw.SetUnreachable(true)
		c := dial(t, fw.Addr()) // the forwarder's own listener is up
		got, err := exchange(c, "hello\n", 300*time.Millisecond)
		if !isTimeout(err) {
			t.Fatalf("exchange while unreachable: got %q, %v; want a timeout", got, err)
		}
		if fw.Counts().Dials < 1 {
			t.Errorf("Counts().Dials = 0; want the dial to hang")
		}
		fw.SetUnreachable(false) // the held dial goes ahead
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 6)
		if _, err := io.ReadFull(c, b); string(b) != "hello\n" {
			t.Fatalf("after recovery: got %q, %v", b, err)
		}
	})
	t.Run("dial timeout", func(t *testing.T) {
		fw, _ := newEcho(t, WithPool(func(c *pool.Config) { c.DialTimeout = 200 * time.Millisecond }))
		fw.SetUnreachable(true)
		start := time.Now() // the dial starts when the client is accepted
		c := dial(t, fw.Addr())
		got, err := exchange(c, "hello\n", 10*time.Second)
		if got != "" || err == nil || isTimeout(err) {
			t.Fatalf("got %q, %v; want the client closed by the forwarder", got, err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Errorf("closed after %v; want at least the dial timeout, 200ms", el)
		}
		s := fw.Session(1)
		<-s.Done()
		var ue *listener.UpstreamError
		if st := s.State(); !errors.As(st.Info.Err, &ue) || !strings.Contains(st.Info.Err.Error(), "unreachable") {
			t.Errorf("session error %v; want an unreachable UpstreamError", st.Info.Err)
		}
		if c := fw.Counts(); c.DialFailures < 1 {
			t.Errorf("Counts() = %+v; want a failed dial", c)
		}
	})
}

func TestConnectDelay(t *testing.T) {
	fw, _ := newEcho(t)
	fw.SetConnectDelay(150 * time.Millisecond)
	start := time.Now() // the dial starts when the client is accepted
	c := dial(t, fw.Addr())
	if got, err := exchange(c, "hello\n", 10*time.Second); got != "hello\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("first exchange took %v; want at least 150ms", el)
	}
}

// TestProbabilityReplay: the draws depend on the seed, the session's
// number and direction, and the chunks it saw; the same test replays them.
func TestProbabilityReplay(t *testing.T) {
	perSession := func(seed uint64) string {
		fw, srv := newEcho(t, WithSeed(seed))
		defer srv.Close()
		defer fw.Close()
		fw.Set(Downstream, ResetAfterBytes(0).WithProbability(0.5).PerSession())
		var b strings.Builder
		for range 24 {
			c := dial(t, fw.Addr())
			_, err := exchange(c, "x\n", 10*time.Second)
			c.Close()
			if err != nil {
				b.WriteByte('R')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	perChunk := func(seed uint64) string {
		fw, srv := newEcho(t, WithSeed(seed))
		defer srv.Close()
		defer fw.Close()
		var (
			mu  sync.Mutex
			hit []string
		)
		fw.Set(Downstream, Hook(func(s *Session, dir Direction, chunk []byte) Action {
			mu.Lock()
			hit = append(hit, strings.TrimSpace(string(chunk)))
			mu.Unlock()
			return Pass()
		}).WithProbability(0.5))
		c := dial(t, fw.Addr())
		for i := range 24 {
			if _, err := exchange(c, fmt.Sprintf("%d\n", i), 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(hit, ",")
	}
	for _, tc := range []struct {
		name string
		run  func(uint64) string
	}{
		{"per session", perSession},
		{"per chunk", perChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, other := tc.run(1), tc.run(1), tc.run(2)
			if a != b {
				t.Errorf("seed 1 drew %q, then %q; want the same", a, b)
			}
			if a == other {
				t.Errorf("seeds 1 and 2 both drew %q; want different draws", a)
			}
			t.Logf("seed 1: %s; seed 2: %s", a, other)
		})
	}
	t.Run("both ways", func(t *testing.T) {
		if got := perSession(1); !strings.Contains(got, "R") || !strings.Contains(got, ".") {
			t.Errorf("draws %q; want some sessions reset and some not at p=0.5", got)
		}
	})
}

// TestChangeFaultsLive changes faults and pauses sessions from many
// goroutines while clients talk through the forwarder. Under -race it
// shows there is no data race, and by finishing, no deadlock; every
// exchange must succeed, since none of these faults ends a session.
func TestChangeFaultsLive(t *testing.T) {
	fw, _ := newEcho(t)
	stop := make(chan struct{})
	var mutators sync.WaitGroup
	shared := SharedBandwidth(4 << 20)
	faults := []func(r *rand.Rand) Fault{
		func(r *rand.Rand) Fault {
			return Latency(time.Duration(r.IntN(3))*time.Millisecond, time.Millisecond)
		},
		func(r *rand.Rand) Fault { return Slicer(4, 2, time.Millisecond) },
		func(r *rand.Rand) Fault { return Bandwidth(1 << 20) },
		func(r *rand.Rand) Fault { return shared },
		func(r *rand.Rand) Fault { return Blackhole(0).WithProbability(0.2) },
		func(r *rand.Rand) Fault { return Latency(time.Millisecond, 0).WithProbability(0.5).PerSession() },
		func(r *rand.Rand) Fault {
			return Hook(func(*Session, Direction, []byte) Action { return Delay(time.Millisecond) })
		},
	}
	dirs := []Direction{Upstream, Downstream, Both}
	for m := range 4 {
		mutators.Add(1)
		go func() {
			defer mutators.Done()
			r := rand.New(rand.NewPCG(uint64(m), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				var set []Fault
				for range r.IntN(3) {
					set = append(set, faults[r.IntN(len(faults))](r))
				}
				fw.Set(dirs[r.IntN(3)], set...)
				if ss := fw.Sessions(); len(ss) > 0 {
					s := ss[r.IntN(len(ss))]
					d := dirs[r.IntN(3)]
					s.Pause(d)
					_ = s.State()
					time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
					s.Resume(d)
				}
				_ = fw.Counts()
				time.Sleep(time.Duration(r.IntN(5)) * time.Millisecond)
			}
		}()
	}
	var clients sync.WaitGroup
	for w := range 6 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for conn := range 3 {
				c, err := net.DialTimeout("tcp", fw.Addr(), 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				for i := range 15 {
					want := fmt.Sprintf("w%d c%d i%d %s\n", w, conn, i, strings.Repeat("p", i*7))
					got, err := exchange(c, want, 20*time.Second)
					if got != want {
						t.Errorf("exchange: got %q, %v; want %q", got, err, want)
						c.Close()
						return
					}
				}
				c.Close()
			}
		}()
	}
	// Blackholes drawn while a client waits are lifted by the next Set;
	// stop the mutators only after the clients are done, then clear.
	done := make(chan struct{})
	go func() {
		clients.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		close(stop)
		mutators.Wait()
		fw.Set(Both)
		<-done
		t.Fatal("clients took over 40s")
	}
	close(stop)
	mutators.Wait()
	if c := fw.Counts(); c.Accepted != 18 {
		t.Errorf("Counts() = %+v; want 18 sessions", c)
	}
}

func TestWaitUpstreamReturned(t *testing.T) {
	needLinux(t) // the pool vets reused conns with a peek on Unix only
	fw, _ := newEcho(t, WithReuse(pool.ReuseIfClean))
	c := dial(t, fw.Addr())
	if _, err := exchange(c, "hello\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := fw.WaitUpstreamReturned(ctxFor(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}

	// The next session reuses it; a fault that cuts the session makes
	// the pool close it instead.
	fw.Set(Downstream, LimitData(2))
	c = dial(t, fw.Addr())
	if got, err := exchange(c, "hello\n", 10*time.Second); got != "he" {
		t.Fatalf("got %q, %v; want he, then EOF", got, err)
	}
	if err := fw.Wait(ctxFor(t, 10*time.Second), func(c Counts) bool { return c.Ended == 2 }); err != nil {
		t.Fatal(err)
	}
	st := fw.Session(2).State()
	if st.Info.Source != pool.SourceReused || st.Info.Outcome.Kept() {
		t.Errorf("session 2: source %v, outcome %v; want a reused conn, then closed", st.Info.Source, st.Info.Outcome)
	}
	if c := fw.Counts(); c.Returned != 1 {
		t.Errorf("Counts().Returned = %d; want 1", c.Returned)
	}
}

func TestWaitClientFIN(t *testing.T) {
	fw, _ := newEcho(t)
	c := dial(t, fw.Addr())
	io.WriteString(c, "bye\n")
	c.(*net.TCPConn).CloseWrite()
	if err := fw.WaitClientFIN(ctxFor(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if b, err := readAll(c, 10*time.Second); string(b) != "bye\n" {
		t.Errorf("got %q, %v; want the reply after the FIN", b, err)
	}
}

func TestWaitEnds(t *testing.T) {
	fw, _ := newEcho(t)
	ctx := ctxFor(t, 50*time.Millisecond)
	if err := fw.WaitSessions(ctx, 1); !errors.Is(err, ctx.Err()) || ctx.Err() == nil {
		t.Errorf("WaitSessions with no session: %v; want the ctx's error", err)
	}
	fw.Close()
	if err := fw.WaitSessions(ctxFor(t, 10*time.Second), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitSessions after Close: %v; want ErrClosed", err)
	}
}

// fakeTB records what a forwarder reports, for tests of the reports.
type fakeTB struct {
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Name() string          { return "fake" }
func (f *fakeTB) Logf(string, ...any)   {}
func (f *fakeTB) Fatalf(string, ...any) { panic("Fatalf") }
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}
func (f *fakeTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// TestCloseReportsStuck: a session that will not end (here a hook that
// blocks until its connection is closed) is named in the cleanup's error,
// then its connections are closed and Close completes.
func TestCloseReportsStuck(t *testing.T) {
	srv := startServer(t, lineEcho)
	tb := &fakeTB{}
	fw := New(tb, srv.Addr(), withStopWait(300*time.Millisecond))
	blocked := make(chan struct{}, 1)
	fw.Set(Downstream, Hook(func(s *Session, _ Direction, _ []byte) Action {
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-s.done // only forceClose ends this
		return Pass()
	}))
	c := dial(t, fw.Addr())
	io.WriteString(c, "hello\n")
	// Wait for the hook itself, not for the request to pass: until the
	// reply reaches the hook, Close would end the session at once.
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the reply never reached the hook")
	}
	tb.cleanup()
	if len(tb.errs) != 1 || !strings.Contains(tb.errs[0], "session 1 (client "+c.LocalAddr().String()+"): phase copy, 6 B to upstream") {
		t.Fatalf("cleanup reported %q; want session 1 named as stuck", tb.errs)
	}
	t.Log(tb.errs[0])
	if strings.Contains(tb.errs[0], "giving up") {
		t.Errorf("Close gave up; want it to end the session by closing its conns")
	}
}

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Set direction", func() { (&Forwarder{}).Set(0) }},
		{"Latency", func() { Latency(-1, 0) }},
		{"Bandwidth", func() { Bandwidth(0) }},
		{"Slicer", func() { Slicer(4, 4, 0) }},
		{"LimitData", func() { LimitData(-1) }},
		{"probability", func() { Latency(0, 0).WithProbability(1.5) }},
		{"Hook", func() { Hook(nil) }},
		{"New with no upstream", func() { New(&fakeTB{}, "") }}, // fakeTB.Fatalf panics
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic")
				}
			}()
			tc.fn()
		})
	}
}

func TestFaults(t *testing.T) {
	fw, _ := newEcho(t)
	l := Latency(time.Second, 0).WithProbability(0.5).PerSession()
	fw.Set(Both, l, Fault{}, SlowClose(time.Second))
	got := fmt.Sprint(fw.Faults(Downstream))
	if want := "[Latency(1s, 0s).WithProbability(0.5).PerSession() SlowClose(1s)]"; got != want {
		t.Errorf("Faults(Downstream) = %s; want %s", got, want)
	}
	fw.Set(Upstream)
	if got := fw.Faults(Upstream); len(got) != 0 {
		t.Errorf("Faults(Upstream) after clearing = %v; want none", got)
	}
}
