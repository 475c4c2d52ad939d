package balance

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestStoppedServerFailsOver: a server stopped (listener and conns
// closed, its spares dead in the pool) costs no Get a failure: dead
// spares are passed over, refused dials are retried on another server,
// and the server is ejected.
func TestStoppedServerFailsOver(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{
		Servers: listOf(ups),
		Pool:    pool.Config{Spares: 2},
		Passive: Passive{Failures: 3, Ejection: time.Minute},
	})
	waitFor(t, "every server's spares", func() bool {
		for _, st := range set.Servers() {
			if st.Pool.IdleFresh != 2 {
				return false
			}
		}
		return true
	})
	gone := ups[1]
	gone.Stop()
	for i := range 30 {
		l := get(t, set)
		if upstreamOf(l) == gone.Addr() {
			t.Fatalf("Get %d: handed a conn to the stopped server", i)
		}
		roundTrip(t, l, "hello")
		l.Release(clean)
	}
	waitFor(t, "the stopped server to be ejected", func() bool { return stateOf(t, set, gone.Addr()) == StateEjected })
	st, _ := statsOf(set, gone.Addr())
	if st.Ejections != 1 || st.DialFailures < 3 {
		t.Errorf("stopped server: %d ejections, %d failed dials; want 1 and at least 3", st.Ejections, st.DialFailures)
	}
	if st.Pool.IdleFresh != 0 {
		t.Errorf("ejected server's pool keeps %d spares; want none (standby)", st.Pool.IdleFresh)
	}
	if set.NoServer() != 0 {
		t.Errorf("NoServer: got %d; want 0", set.NoServer())
	}
}

// TestDialsNeverCompleteFailOver: a server whose dials hang (a full
// accept queue) costs no Get a failure: each hung dial times out and is
// retried on another server, and the server is ejected.
func TestDialsNeverCompleteFailOver(t *testing.T) {
	ups := startEchos(t, 2)
	hole := blackhole(t)
	set := newSet(t, Config{
		Servers: append(listOf(ups), Server{Addr: hole}),
		Pool:    pool.Config{DialTimeout: 200 * time.Millisecond},
		Passive: Passive{Failures: 2, Ejection: time.Minute},
	})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				l, err := set.Get(ctx)
				cancel()
				if err != nil {
					errs <- err
					continue
				}
				if got, err := exchange(l.Conn(), "hi"); err != nil || got != "hi" {
					errs <- errors.New("exchange through " + upstreamOf(l) + " failed")
				}
				l.Release(clean)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Get: %v", err)
	}
	st, _ := statsOf(set, hole)
	if st.State != StateEjected || st.Ejections < 1 {
		t.Errorf("hung server: state %v, %d ejections, %d failed dials; want ejected", st.State, st.Ejections, st.DialFailures)
	}
	if st.Sessions != 0 {
		t.Errorf("hung server got %d sessions; want 0", st.Sessions)
	}
}

// TestPassiveEjectionAndProbation: failures in a row eject a server, a
// good session starts the count again, an ejected server gets no session,
// and once back it is on probation: one failure ejects it again, until a
// good session. A second server, always healthy, takes the rest: the last
// healthy server is never ejected (TestLastServerNotEjected).
func TestPassiveEjectionAndProbation(t *testing.T) {
	ups := startEchos(t, 2)
	flaky, other := ups[0], ups[1]
	set := newSet(t, Config{
		Servers: listOf(ups),
		// Ejections end when the test says (endEjection), not by a timer
		// that a slow machine could outrun.
		Passive: Passive{Failures: 3, Ejection: time.Hour},
	})
	endEjection := func() {
		t.Helper()
		set.mu.Lock()
		var sv *server
		for _, s := range set.servers {
			if s.addr == flaky.Addr() {
				sv = s
			}
		}
		set.mu.Unlock()
		sv.endEjection()
		if s := stateOf(t, set, flaky.Addr()); s != StateUp {
			t.Fatalf("after the ejection's end: %v; want up", s)
		}
	}
	failed := pool.Verdict{Used: true, UpstreamFailed: true}
	// session ends one session on flaky with v; the leases that land on
	// the other server go back untouched (no verdict on it).
	session := func(v pool.Verdict) {
		t.Helper()
		for range 10 {
			l := get(t, set)
			if upstreamOf(l) == flaky.Addr() {
				l.Release(v)
				return
			}
			l.Release(pool.Verdict{})
		}
		t.Fatalf("no session reached %s in 10 tries", flaky.Addr())
	}
	session(failed)
	session(failed)
	session(clean) // starts the count again
	session(failed)
	session(failed)
	if s := stateOf(t, set, flaky.Addr()); s != StateUp {
		t.Fatalf("after 2 failures, a success and 2 failures: state %v; want up", s)
	}
	session(failed)
	if s := stateOf(t, set, flaky.Addr()); s != StateEjected {
		t.Fatalf("after 3 failures in a row: state %v; want ejected", s)
	}
	for range 4 {
		l := get(t, set)
		if got := upstreamOf(l); got != other.Addr() {
			t.Fatalf("a session while %s is ejected went to %s", flaky.Addr(), got)
		}
		l.Release(pool.Verdict{})
	}
	endEjection()
	session(failed) // on probation: one failure is enough
	st, _ := statsOf(set, flaky.Addr())
	if st.State != StateEjected || st.Ejections != 2 || st.Failures != 6 {
		t.Fatalf("one failure on probation: state %v, %d ejections, %d failures; want ejected, 2, 6", st.State, st.Ejections, st.Failures)
	}
	endEjection()
	session(clean) // off probation
	session(failed)
	if s := stateOf(t, set, flaky.Addr()); s != StateUp {
		t.Errorf("a failure after a good session off probation: state %v; want up", s)
	}
}

// TestLastServerNotEjected: a lone server that fails is never ejected,
// so that once it is back the next client is served, not refused for the
// cooling time; while it is down, each client fails as fast as its dial.
func TestLastServerNotEjected(t *testing.T) {
	ups := startEchos(t, 1)
	set := newSet(t, Config{Servers: listOf(ups), Passive: Passive{Failures: 1, Ejection: time.Hour}})
	ups[0].Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if _, err := set.Get(ctx); !errors.Is(err, ErrNoServer) || !errors.Is(err, syscallRefused) {
			t.Fatalf("Get with the lone server stopped: got %v; want ErrNoServer wrapping connection refused", err)
		}
	}
	if s := stateOf(t, set, ups[0].Addr()); s != StateUp {
		t.Fatalf("the lone server after failed dials: %v; want up", s)
	}
	ups[0].Restart()
	roundTrip(t, get(t, set), "back at once")
}

// TestActiveCheckDownAndBack: a stopped server is marked down by its
// checks and gets no session; restarted on the same port, it is up again
// after Rise checks and gets sessions again.
func TestActiveCheckDownAndBack(t *testing.T) {
	ups := startEchos(t, 2)
	flaky := ups[0]
	set := newSet(t, Config{
		Servers: listOf(ups),
		// A long timeout: a check is failed by a stopped server, not by a
		// slow machine.
		Check: Check{Every: 20 * time.Millisecond, Timeout: 5 * time.Second, Rise: 2, Fall: 2},
		Pool:  keepUntouched,
	})
	flaky.Stop()
	waitFor(t, "the stopped server to be down", func() bool { return stateOf(t, set, flaky.Addr()) == StateDown })
	for i := range 10 {
		l := get(t, set)
		if upstreamOf(l) == flaky.Addr() {
			t.Fatalf("Get %d went to the server that is down", i)
		}
		roundTrip(t, l, "x")
		l.Release(clean)
	}
	flaky.Restart()
	waitFor(t, "the restarted server to be up", func() bool { return stateOf(t, set, flaky.Addr()) == StateUp })
	waitFor(t, "a session on the restarted server", func() bool {
		l := get(t, set)
		defer l.Release(clean)
		roundTrip(t, l, "y")
		return upstreamOf(l) == flaky.Addr()
	})
	st, _ := statsOf(set, flaky.Addr())
	if st.Downs != 1 || st.CheckFailures < 2 {
		t.Errorf("stats: %d downs, %d failed checks; want 1 and at least 2", st.Downs, st.CheckFailures)
	}
}

// TestActiveCheckSendExpect: a check sends Send and wants a reply that
// starts with Expect; a server answering something else is marked down.
func TestActiveCheckSendExpect(t *testing.T) {
	reply := func(answer string) func(net.Conn) {
		return serveLines(func(line string) string {
			if line == "PING\r\n" {
				return answer
			}
			return "-ERR unknown\r\n"
		})
	}
	good := startServer(t, reply("+PONG\r\n"))
	bad := startServer(t, reply("-LOADING\r\n"))
	set := newSet(t, Config{
		Servers: listOf([]*testServer{good, bad}),
		Check: Check{Every: 20 * time.Millisecond, Timeout: 5 * time.Second, Rise: 1, Fall: 2,
			Send: []byte("PING\r\n"), Expect: []byte("+PONG\r\n")},
	})
	waitFor(t, "the wrong answer to mark its server down", func() bool { return stateOf(t, set, bad.Addr()) == StateDown })
	waitFor(t, "a few checks of the good server", func() bool { return good.Accepts() >= 3 })
	st, _ := statsOf(set, good.Addr())
	if st.State != StateUp || st.CheckFailures != 0 {
		t.Errorf("server answering +PONG: state %v, %d failed checks; want up, 0", st.State, st.CheckFailures)
	}
}

// TestEveryServerDown: with every server stopped, Get fails at once
// with ErrNoServer wrapping the last dial's error (before its ctx ends),
// and NoServer counts it. All but the last healthy server are ejected.
func TestEveryServerDown(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{
		Servers: listOf(ups),
		Passive: Passive{Failures: 1, Ejection: time.Minute},
	})
	for _, up := range ups {
		up.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The first Get tries both: each refused dial ejects its server.
	_, err := set.Get(ctx)
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("Get with both servers stopped: got %v; want ErrNoServer", err)
	}
	if !errors.Is(err, syscallRefused) {
		t.Errorf("Get: got %v; want it to wrap the last dial error (connection refused)", err)
	}
	// One is ejected; the other, the last healthy server, never is.
	states := map[State]int{}
	for _, up := range ups {
		states[stateOf(t, set, up.Addr())]++
	}
	if states[StateEjected] != 1 || states[StateUp] != 1 {
		t.Fatalf("states after both failed: %v; want one ejected and one up", states)
	}
	_, err = set.Get(ctx)
	if !errors.Is(err, ErrNoServer) || ctx.Err() != nil {
		t.Fatalf("Get with every server ejected: got %v (ctx %v); want ErrNoServer before ctx ends", err, ctx.Err())
	}
	if n := set.NoServer(); n != 2 {
		t.Errorf("NoServer: got %d; want 2", n)
	}
}
