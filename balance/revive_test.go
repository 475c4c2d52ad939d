package balance

import (
	"context"
	"testing"

	"github.com/relaykit/relay/pool"
)

// TestReviveDraining: a server listed again while it drains is taken
// back, with its pool, and appears once in Servers.
func TestReviveDraining(t *testing.T) {
	ups := startEchos(t, 2)
	set := newSet(t, Config{Servers: listOf(ups[:1])})
	held := get(t, set)
	if err := set.Update(context.Background(), listOf(ups[1:]), RoundRobin); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, set, ups[0].Addr()); st != StateDraining {
		t.Fatalf("after the first update: %s; want draining", st)
	}
	if err := set.Update(context.Background(), listOf(ups), RoundRobin); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, s := range set.Servers() {
		seen[s.Addr]++
		if s.State != StateUp {
			t.Errorf("%s: %s; want up", s.Addr, s.State)
		}
	}
	if seen[ups[0].Addr()] != 1 || len(seen) != 2 {
		t.Errorf("Servers lists %v; want each server once", seen)
	}
	roundTrip(t, held, "still here")
	held.Release(pool.Verdict{Used: true})
	if st, ok := statsOf(set, ups[0].Addr()); !ok || st.Active != 0 || st.Sessions != 1 {
		t.Errorf("the revived server: %+v; want its figures kept (1 session, none active)", st)
	}
}
