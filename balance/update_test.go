package balance

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestUpdateDrainsRemovedServer: a server removed while it holds sessions
// drains: those sessions still work, new ones never go to it, and it is
// gone once they end.
func TestUpdateDrainsRemovedServer(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups), Pool: keepUntouched})
	removed := ups[0].Addr()
	var mine, others []pool.Lease
	for range 6 {
		l := get(t, set)
		if upstreamOf(l) == removed {
			mine = append(mine, l)
		} else {
			others = append(others, l)
		}
	}
	if len(mine) != 2 {
		t.Fatalf("6 Gets in turn over 3 servers: %d on %s; want 2", len(mine), removed)
	}
	if err := set.Update(context.Background(), listOf(ups[1:]), RoundRobin); err != nil {
		t.Fatal(err)
	}
	st, ok := statsOf(set, removed)
	if !ok || st.State != StateDraining || st.Active != 2 {
		t.Fatalf("removed server with 2 sessions: %+v (listed %v); want draining, 2 active", st, ok)
	}
	for _, l := range mine {
		roundTrip(t, l, "still here")
	}
	for i := range 20 {
		l := get(t, set)
		if upstreamOf(l) == removed {
			t.Fatalf("Get %d after Update went to the removed server", i)
		}
		l.Release(untouched)
	}
	mine[0].Release(clean)
	if s := stateOf(t, set, removed); s != StateDraining {
		t.Fatalf("with one session left: state %v; want draining", s)
	}
	roundTrip(t, mine[1], "last one")
	mine[1].Release(clean)
	if _, ok := statsOf(set, removed); ok {
		t.Fatalf("the drained server is still listed: %+v", set.Servers())
	}
	for _, l := range others {
		l.Release(untouched)
	}
	if got := len(set.Servers()); got != 2 {
		t.Errorf("Servers: %d listed; want 2", got)
	}
}

// TestUpdateKeepsHealthAndTakesWeights: a server that stays keeps its
// pool and health and takes its new weight; the policy changes.
func TestUpdateKeepsHealthAndTakesWeights(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{Servers: listOf(ups), Passive: Passive{Failures: 1, Ejection: time.Minute}})
	ups[0].Stop()
	waitFor(t, "the stopped server to be ejected", func() bool {
		l := get(t, set)
		l.Release(untouched)
		return stateOf(t, set, ups[0].Addr()) == StateEjected
	})
	if err := set.Update(context.Background(), listOf(ups, 3, 5), LeastConn); err != nil {
		t.Fatal(err)
	}
	if set.Balance() != LeastConn {
		t.Errorf("Balance: got %v; want least-conn", set.Balance())
	}
	for i, want := range []int{3, 5} {
		if st, _ := statsOf(set, ups[i].Addr()); st.Weight != want {
			t.Errorf("server %d after Update: weight %d; want %d", i, st.Weight, want)
		}
	}
	if s := stateOf(t, set, ups[0].Addr()); s != StateEjected {
		t.Errorf("a server kept by Update: state %v; want still ejected", s)
	}
}

// TestUpdateInvalidChangesNothing: an invalid list, policy or name is an
// error naming it, and the set runs on as it was.
func TestUpdateInvalidChangesNothing(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{
		Servers:      listOf(ups, 1, 2),
		Policy:       LeastConn,
		ResolveEvery: -1,
		Resolve: func(context.Context, string) ([]netipAddr, error) {
			return nil, errors.New("no such host (test)")
		},
	})
	before := set.Servers()
	for _, tt := range []struct {
		list   []Server
		policy Policy
		want   string
	}{
		{[]Server{{Addr: ups[0].Addr()}, {Addr: "nohost"}}, RoundRobin, "Config.Servers[1].Addr"},
		{[]Server{{Addr: ups[0].Addr(), Weight: 300}}, RoundRobin, "Config.Servers[0].Weight"},
		{nil, RoundRobin, "Config.Servers"},
		{listOf(ups), Policy(7), "policy"},
		{[]Server{{Addr: ups[0].Addr()}, {Addr: "gone.test:80"}}, RoundRobin, "Config.Servers[1]"},
	} {
		err := set.Update(context.Background(), tt.list, tt.policy)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Update(%v, %v): got %v; want an error naming %s", tt.list, tt.policy, err, tt.want)
		}
	}
	after := set.Servers()
	same := slices.EqualFunc(before, after, func(a, b ServerStats) bool {
		return a.Addr == b.Addr && a.Weight == b.Weight && a.State == b.State
	})
	if !same || set.Balance() != LeastConn {
		t.Errorf("after failed Updates: %+v, %v; want %+v, least-conn", after, set.Balance(), before)
	}
	l := get(t, set)
	roundTrip(t, l, "ok")
	l.Release(clean)
}

// TestMaxSessionsFIFO: with every server at MaxSessions, a caller waits
// until a session ends; callers waiting are served in the order they
// came.
func TestMaxSessionsFIFO(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{Servers: listOf(ups), MaxSessions: 1, Pool: keepUntouched})
	first, second := get(t, set), get(t, set)
	if upstreamOf(first) == upstreamOf(second) {
		t.Fatalf("two sessions under MaxSessions 1 went to the same server %s", upstreamOf(first))
	}
	third := make(chan pool.Lease, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := set.Get(ctx)
		if err != nil {
			t.Errorf("third Get: %v", err)
		}
		third <- l
	}()
	waitFor(t, "the third caller to queue", func() bool { return set.nwait.Load() == 1 })
	select {
	case <-third:
		t.Fatal("a third session got through with both servers at MaxSessions 1")
	case <-time.After(50 * time.Millisecond):
	}
	freed := upstreamOf(first)
	first.Release(untouched)
	l := <-third
	if t.Failed() {
		return
	}
	if upstreamOf(l) != freed {
		t.Errorf("the waiter got %s; want the server freed, %s", upstreamOf(l), freed)
	}
	roundTrip(t, l, "waited")
	l.Release(untouched)
	second.Release(untouched)

	// The order, on one server: on two, a woken waiter that first tries
	// the full one wakes the next waiter too (see
	// TestWokenWaiterKeepsItsTurn).
	one := newSet(t, Config{Servers: listOf(ups[:1]), MaxSessions: 1, Pool: keepUntouched})
	fifoOrder(t, one, get(t, one))
}

// fifoOrder queues 3 callers on set, whose servers are all full, then
// releases held and each caller's lease in turn: they must be served in
// the order they came.
func fifoOrder(t *testing.T, set *Set, held pool.Lease) {
	t.Helper()
	type result struct {
		who   int
		lease pool.Lease
		err   error
	}
	served := make(chan result, 3)
	for who := range 3 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := set.Get(ctx)
			served <- result{who, l, err}
		}()
		waitFor(t, "the caller to queue", func() bool { return set.nwait.Load() == int32(who+1) })
	}
	release := held
	for want := range 3 {
		release.Release(untouched)
		r := <-served
		if r.err != nil {
			t.Fatalf("caller %d: %v", r.who, r.err)
		}
		if r.who != want {
			r.lease.Release(untouched)
			t.Fatalf("a session ended: caller %d was served; want %d (FIFO)", r.who, want)
		}
		roundTrip(t, r.lease, "queued")
		release = r.lease
	}
	release.Release(untouched)
}

// TestWokenWaiterKeepsItsTurn: on two servers at MaxSessions 1, callers
// are served in the order they came.
func TestWokenWaiterKeepsItsTurn(t *testing.T) {
	ups := startEchos(t, 2)
	for range 50 {
		set := newSet(t, Config{Servers: listOf(ups), MaxSessions: 1, Pool: keepUntouched})
		a, b := get(t, set), get(t, set)
		fifoOrder(t, set, a)
		b.Release(untouched)
		set.Close()
	}
}

// TestMaxSessionsWaiterCtx: a waiter whose ctx ends gets ctx's error and
// leaves the queue; the next session that ends serves the one behind it.
func TestMaxSessionsWaiterCtx(t *testing.T) {
	up := startServer(t, echo)
	set := newSet(t, Config{Servers: []Server{{Addr: up.Addr()}}, MaxSessions: 1})
	held := get(t, set)

	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := set.Get(ctx)
		gaveUp <- err
	}()
	waitFor(t, "the first caller to queue", func() bool { return set.nwait.Load() == 1 })
	behind := make(chan error, 1)
	var next pool.Lease
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		next, err = set.Get(ctx)
		behind <- err
	}()
	waitFor(t, "the second caller to queue", func() bool { return set.nwait.Load() == 2 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter whose ctx ended: got %v; want context.Canceled", err)
	}
	held.Release(untouched)
	if err := <-behind; err != nil {
		t.Fatalf("the caller behind: %v", err)
	}
	roundTrip(t, next, "next")
	next.Release(clean)
	if n := set.nwait.Load(); n != 0 {
		t.Errorf("%d callers still queued", n)
	}

	// A deadline is ctx's error too.
	held = get(t, set)
	defer held.Release(untouched)
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := set.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter past its deadline: got %v; want context.DeadlineExceeded", err)
	}
}

// TestCloseFailsWaiters: Close fails callers waiting under MaxSessions
// with ErrClosed.
func TestCloseFailsWaiters(t *testing.T) {
	up := startServer(t, echo)
	set := newSet(t, Config{Servers: []Server{{Addr: up.Addr()}}, MaxSessions: 1})
	held := get(t, set)
	failed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := set.Get(ctx)
		failed <- err
	}()
	waitFor(t, "the caller to queue", func() bool { return set.nwait.Load() == 1 })
	set.Close()
	if err := <-failed; !errors.Is(err, ErrClosed) {
		t.Errorf("waiter at Close: got %v; want ErrClosed", err)
	}
	held.Release(clean) // after Close: closes the conn, no panic
}

// TestUpdateWeightsUnderLoad: Update may change a kept server's weight
// while Gets pick by weight; -race finds any unsynchronized access.
func TestUpdateWeightsUnderLoad(t *testing.T) {
	ups := startEchos(t, 3)
	for _, policy := range []Policy{LeastConn, Random, ClientIP} {
		t.Run(policy.String(), func(t *testing.T) {
			set := newSet(t, Config{Servers: listOf(ups), Policy: policy, Pool: keepUntouched})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var gets atomic.Int64
			for g := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						l, err := set.GetFor(ctx, tcpAddr(g))
						cancel()
						if err != nil {
							t.Error(err)
							return
						}
						l.Release(untouched)
						gets.Add(1)
					}
				}()
			}
			for i := 0; gets.Load() < 500 && !t.Failed(); i++ {
				if err := set.Update(context.Background(), listOf(ups, 1+i%3, 2, 3-i%3), policy); err != nil {
					t.Error(err)
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}
