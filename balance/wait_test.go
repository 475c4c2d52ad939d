package balance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestWokenWaiterGivingUpPassesTheTurn: a waiter woken for a free slot
// whose ctx ends before it takes the slot must pass the turn on to the
// caller behind it, which would otherwise wait for another session to
// end though a slot is free. The race is retried until it is hit.
func TestWokenWaiterGivingUpPassesTheTurn(t *testing.T) {
	up := startServer(t, echo)
	set := newSet(t, Config{Servers: []Server{{Addr: up.Addr()}}, MaxSessions: 1, Pool: keepUntouched})
	hit := 0
	for trial := 0; trial < 200 && hit < 5; trial++ {
		held := get(t, set)
		ctx1, cancel1 := context.WithCancel(context.Background())
		first := make(chan error, 1)
		var firstLease pool.Lease
		go func() {
			var err error
			firstLease, err = set.Get(ctx1)
			first <- err
		}()
		waitFor(t, "the first caller to queue", func() bool { return set.nwait.Load() == 1 })
		second := make(chan pool.Lease, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := set.Get(ctx)
			if err != nil {
				t.Errorf("trial %d: the caller behind: %v", trial, err)
			}
			second <- l
		}()
		waitFor(t, "the second caller to queue", func() bool { return set.nwait.Load() == 2 })
		held.Release(untouched) // wakes the first caller...
		cancel1()               // ...whose ctx ends, as likely as not before it runs
		if err := <-first; err == nil {
			firstLease.Release(untouched) // it took the slot: hand it on
		} else if errors.Is(err, context.Canceled) {
			hit++
		} else {
			t.Fatalf("trial %d: first caller: %v", trial, err)
		}
		l := <-second
		if t.Failed() {
			return
		}
		l.Release(untouched)
	}
	if hit == 0 {
		t.Skip("the race was never hit")
	}
}

// TestWaiterDoesNotSpin: a caller that tried a server (its dial failed)
// and finds the others full waits for one to free up; it must not spin,
// waking itself for the room on the server it already tried.
func TestWaiterDoesNotSpin(t *testing.T) {
	refused := startServer(t, echo)
	refused.Stop()
	good := startServer(t, echo)
	set := newSet(t, Config{
		Servers:     []Server{{Addr: refused.Addr()}, {Addr: good.Addr()}},
		MaxSessions: 1,
		Passive:     Passive{Failures: -1},
	})
	held := get(t, set) // on the good server, maybe after a failed dial
	if upstreamOf(held) != good.Addr() {
		t.Fatalf("Get went to %s", upstreamOf(held))
	}
	fails, _ := statsOf(set, refused.Addr())
	done := make(chan error, 1)
	var l pool.Lease
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		l, err = set.Get(ctx)
		done <- err
	}()
	waitFor(t, "the waiter to try the refusing server", func() bool {
		st, _ := statsOf(set, refused.Addr())
		return st.DialFailures > fails.DialFailures
	})
	waitFor(t, "the waiter to queue", func() bool { return set.nwait.Load() == 1 })
	// Parked, a waiter picks nothing: the turn counter stays still.
	before := set.rr.Load()
	time.Sleep(100 * time.Millisecond)
	if picks := set.rr.Load() - before; picks > 2 {
		t.Errorf("a parked waiter picked %d times in 100ms: it spins", picks)
	}
	held.Release(untouched)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if upstreamOf(l) != good.Addr() {
		t.Errorf("the waiter got %s", upstreamOf(l))
	}
	l.Release(untouched)
}
