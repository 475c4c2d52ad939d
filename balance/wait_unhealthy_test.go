package balance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestWaiterFailsWhenNothingIsLeft: a caller waiting under MaxSessions
// is not left waiting for its whole ctx when its only server goes down
// meanwhile: it fails with ErrNoServer.
func TestWaiterFailsWhenNothingIsLeft(t *testing.T) {
	ups := startEchos(t, 1)
	set := newSet(t, Config{Servers: listOf(ups), MaxSessions: 1})
	held := get(t, set)
	defer held.Release(pool.Verdict{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		_, err := set.Get(ctx)
		failed <- err
	}()
	waitFor(t, "the caller to queue", func() bool { return set.nwait.Load() == 1 })
	// Its checks find it down (marked as the checker does, without one).
	set.mu.Lock()
	for _, sv := range set.servers {
		sv.markLocked(true)
	}
	set.mu.Unlock()
	select {
	case err := <-failed:
		if !errors.Is(err, ErrNoServer) {
			t.Errorf("got %v; want ErrNoServer", err)
		}
	case <-ctx.Done():
		t.Fatal("the waiter was left waiting after its only server went down")
	}
}
