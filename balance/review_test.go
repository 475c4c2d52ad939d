package balance

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestFailoverEveryPolicy: every policy fails a dial over to another
// server, and with every server stopped each returns ErrNoServer rather
// than picking from an empty set (Random used to index an empty view).
func TestFailoverEveryPolicy(t *testing.T) {
	for _, pol := range []Policy{RoundRobin, LeastConn, Random, ClientIP} {
		t.Run(pol.String(), func(t *testing.T) {
			ups := startEchos(t, 3)
			set := newSet(t, Config{Servers: listOf(ups), Policy: pol, Passive: Passive{Failures: 1, Ejection: time.Hour}})
			ups[0].Stop()
			for i := range 12 {
				l := getFor(t, set, "127.0.0.1", i)
				if upstreamOf(l) == ups[0].Addr() {
					t.Fatalf("a lease on the stopped server")
				}
				l.Release(pool.Verdict{})
			}
			ups[1].Stop()
			ups[2].Stop()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := range 6 {
				if _, err := set.GetFor(ctx, tcpAddr(i)); !errors.Is(err, ErrNoServer) {
					t.Fatalf("Get %d with every server stopped: got %v; want ErrNoServer", i, err)
				}
			}
		})
	}
}

// TestWakeEveryWaiterWithRoom: when an Update adds room for two waiters
// at once, both are served, not just the first.
func TestWakeEveryWaiterWithRoom(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups[:1]), MaxSessions: 1})
	held := get(t, set)
	defer held.Release(pool.Verdict{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan error, 2)
	for range 2 {
		go func() {
			l, err := set.Get(ctx)
			if err == nil {
				defer l.Release(pool.Verdict{})
				<-ctx.Done() // hold it
			}
			got <- err
		}()
	}
	waitFor(t, "both to queue", func() bool { return set.nwait.Load() == 2 })
	if err := set.Update(context.Background(), listOf(ups), RoundRobin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both waiters served", func() bool {
		n := 0
		for _, s := range set.Servers() {
			n += s.Active
		}
		return n == 3
	})
	cancel()
	for range 2 {
		if err := <-got; err != nil {
			t.Errorf("a waiter: %v; want served", err)
		}
	}
}

// TestResolverStartsOnce: Updates that swap names for IPs and back do
// not start a second resolver loop.
func TestResolverStartsOnce(t *testing.T) {
	ups := startEchos(t, 1)
	_, port, _ := net.SplitHostPort(ups[0].Addr())
	var lookups atomic.Int64
	set := newSet(t, Config{
		Servers:      []Server{{Addr: "svc.test:" + port}},
		ResolveEvery: 20 * time.Millisecond,
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			lookups.Add(1)
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	for range 3 {
		if err := set.Update(context.Background(), listOf(ups), RoundRobin); err != nil {
			t.Fatal(err)
		}
		if err := set.Update(context.Background(), []Server{{Addr: "svc.test:" + port}}, RoundRobin); err != nil {
			t.Fatal(err)
		}
	}
	// One loop resolves at most every 20ms (a timer never fires early);
	// four would resolve four times as often.
	// A loop runs at all: it looks the name up by itself.
	before := lookups.Load()
	waitFor(t, "the resolver to look up again", func() bool { return lookups.Load() > before })
	before = lookups.Load()
	time.Sleep(400 * time.Millisecond)
	if n := lookups.Load() - before; n > 30 {
		t.Errorf("%d lookups in 400ms with ResolveEvery 20ms; want one loop's (about 20)", n)
	}
}

// TestCheckPassKeepsEjection: a server that takes dials but resets every
// session stays ejected while its active checks pass: a passing check
// does not end an ejection or its doubling.
func TestCheckPassKeepsEjection(t *testing.T) {
	ups := startEchos(t, 2)
	flaky := ups[0]
	set := newSet(t, Config{
		Servers: listOf(ups),
		Passive: Passive{Failures: 1, Ejection: time.Hour},
		Check:   Check{Every: 10 * time.Millisecond, Rise: 1},
	})
	for range 10 {
		l := get(t, set)
		if upstreamOf(l) == flaky.Addr() {
			l.Release(pool.Verdict{Used: true, UpstreamFailed: true})
			break
		}
		l.Release(pool.Verdict{})
	}
	if s := stateOf(t, set, flaky.Addr()); s != StateEjected {
		t.Fatalf("after a reset session: %v; want ejected", s)
	}
	// Its pool is in standby: what it accepts now are the checks' dials.
	accepts := flaky.Accepts()
	waitFor(t, "five checks to pass", func() bool { return flaky.Accepts() >= accepts+5 })
	if s := stateOf(t, set, flaky.Addr()); s != StateEjected {
		t.Errorf("after passing checks: %v; want still ejected", s)
	}
}

// TestStatsNeverGoBack: a server removed by Update keeps its pool's
// counters in the set's Stats, so that a Prometheus counter built on them
// never goes back.
func TestStatsNeverGoBack(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{Servers: listOf(ups)})
	for range 6 {
		get(t, set).Release(pool.Verdict{})
	}
	before := set.Stats()
	if err := set.Update(context.Background(), listOf(ups[1:]), RoundRobin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed server's pool closed", func() bool {
		set.mu.Lock()
		defer set.mu.Unlock()
		return len(set.closing) == 0 && len(set.draining) == 0
	})
	after := set.Stats()
	if after.Dials < before.Dials || after.GetSpare+after.GetDial < before.GetSpare+before.GetDial {
		t.Errorf("after removing a server: %d dials, %d hand-outs; before: %d and %d; counters went back",
			after.Dials, after.GetSpare+after.GetDial, before.Dials, before.GetSpare+before.GetDial)
	}
}
