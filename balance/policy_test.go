package balance

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/relaykit/relay/pool"
)

// keepUntouched makes a lease given back untouched go back as a spare,
// so that Get+Release rounds do not dial each time.
var keepUntouched = pool.Config{MaxIdle: 4}

// TestRoundRobinWeights: weights 1, 2, 3 give exactly 1, 2 and 3
// sessions in every 6 Gets in a row, spread out (no server three times
// running).
func TestRoundRobinWeights(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups, 1, 2, 3), Pool: keepUntouched})
	var seq []string
	for range 60 {
		l := get(t, set)
		seq = append(seq, upstreamOf(l))
		l.Release(untouched)
	}
	for w := 0; w < len(seq); w += 6 {
		got := make(map[string]int)
		for _, a := range seq[w : w+6] {
			got[a]++
		}
		for i, up := range ups {
			if got[up.Addr()] != i+1 {
				t.Fatalf("Gets %d to %d: server %d (weight %d) got %d; want %d (all: %v)", w, w+5, i, i+1, got[up.Addr()], i+1, got)
			}
		}
	}
	for i := 2; i < len(seq); i++ {
		if seq[i] == seq[i-1] && seq[i] == seq[i-2] {
			t.Fatalf("Gets %d to %d all went to %s: not spread", i-2, i, seq[i])
		}
	}
}

// TestLeastConn: each Get goes to a server with the fewest sessions in
// flight.
func TestLeastConn(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups), Policy: LeastConn, Pool: keepUntouched})
	held := make(map[string][]pool.Lease)
	for range 6 {
		l := get(t, set)
		held[upstreamOf(l)] = append(held[upstreamOf(l)], l)
	}
	for _, up := range ups {
		if n := len(held[up.Addr()]); n != 2 {
			t.Fatalf("6 held leases: %s got %d; want 2 each", up.Addr(), n)
		}
	}
	// Free both of one server's sessions: the next two go there.
	light := ups[1].Addr()
	for _, l := range held[light] {
		l.Release(untouched)
	}
	held[light] = nil
	for i := range 2 {
		l := get(t, set)
		if got := upstreamOf(l); got != light {
			t.Fatalf("Get %d after freeing %s: went to %s", i, light, got)
		}
		held[light] = append(held[light], l)
	}
	for _, ls := range held {
		for _, l := range ls {
			l.Release(untouched)
		}
	}
	// Weights 1, 2, 1: 8 sessions held are exactly 2, 4, 2 (2 per unit
	// of weight everywhere; any other spread has a server above 2 that
	// least-conn would not have picked).
	if err := set.Update(context.Background(), listOf(ups, 1, 2, 1), LeastConn); err != nil {
		t.Fatal(err)
	}
	held = make(map[string][]pool.Lease)
	for range 8 {
		l := get(t, set)
		held[upstreamOf(l)] = append(held[upstreamOf(l)], l)
	}
	for i, up := range ups {
		if n, want := len(held[up.Addr()]), []int{2, 4, 2}[i]; n != want {
			t.Errorf("weights 1, 2, 1, 8 sessions held: server %d holds %d; want %d", i, n, want)
		}
	}
	for _, ls := range held {
		for _, l := range ls {
			l.Release(untouched)
		}
	}
}

// TestRandomSpreads: two random choices send sessions to every server.
func TestRandomSpreads(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups), Policy: Random, Pool: keepUntouched})
	got := countBy(t, set, 300)
	for _, up := range ups {
		// 100 expected each; 45 is more than 6 standard deviations off.
		if got[up.Addr()] < 45 {
			t.Errorf("%s got %d of 300 sessions; want about 100 (%v)", up.Addr(), got[up.Addr()], got)
		}
	}
}

// TestRandomPrefersLighter: of two servers, one holding 10 sessions,
// the idle one takes about 3 in 4 new sessions (the busy one only when
// both draws land on it), not 1 in 2.
func TestRandomPrefersLighter(t *testing.T) {
	ups := startEchos(t, 2)
	busy, idle := ups[0].Addr(), ups[1].Addr()
	set := newSet(t, Config{Servers: []Server{{Addr: busy}}, Policy: Random, Pool: keepUntouched})
	var held []pool.Lease
	for range 10 {
		held = append(held, get(t, set))
	}
	defer func() {
		for _, l := range held {
			l.Release(untouched)
		}
	}()
	if err := set.Update(context.Background(), listOf(ups), Random); err != nil {
		t.Fatal(err)
	}
	const n = 400
	got := countBy(t, set, n)
	// 300 expected for p2c (sd 8.7), 200 for a single random draw (sd
	// 10): 260 is far from both.
	if got[idle] < 260 {
		t.Errorf("the idle server got %d of %d sessions, the busy one %d; want about 3 in 4", got[idle], n, got[busy])
	}
}

// TestClientIPSticky: a client IP goes to the same server every time,
// and the clients spread over the servers.
func TestClientIPSticky(t *testing.T) {
	ups := startEchos(t, 3)
	set := newSet(t, Config{Servers: listOf(ups), Policy: ClientIP, Pool: keepUntouched})
	seen := make(map[string]int)
	for i := 1; i <= 32; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		first := ""
		for j := range 5 {
			l := getFor(t, set, ip, 40000+j)
			got := upstreamOf(l)
			l.Release(untouched)
			if first == "" {
				first = got
				seen[got]++
			} else if got != first {
				t.Fatalf("client %s went to %s, then to %s", ip, first, got)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("32 clients went to %d servers; want all 3 (%v)", len(seen), seen)
	}
	// A client without an IP (a unix socket, or none) is served in turn.
	for _, addr := range []net.Addr{nil, &net.UnixAddr{Name: "/tmp/x.sock", Net: "unix"}} {
		got := make(map[string]int)
		for range 6 {
			l, err := set.GetFor(t.Context(), addr)
			if err != nil {
				t.Fatalf("GetFor(%v): %v", addr, err)
			}
			got[upstreamOf(l)]++
			l.Release(untouched)
		}
		if len(got) != 3 {
			t.Errorf("GetFor(%v) 6 times: went to %v; want all 3 in turn", addr, got)
		}
	}
}

// TestClientIPAddServerMovesAQuarter: a 4th server takes about a quarter
// of the clients, every one of them from the others, and no other client
// moves.
func TestClientIPAddServerMovesAQuarter(t *testing.T) {
	ups := startEchos(t, 4)
	set := newSet(t, Config{Servers: listOf(ups[:3]), Policy: ClientIP, Pool: keepUntouched})
	const n = 1000
	ipOf := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	before := make([]string, n)
	perServer := make(map[string]int)
	for i := range n {
		l := getFor(t, set, ipOf(i), 5000)
		before[i] = upstreamOf(l)
		perServer[before[i]]++
		l.Release(untouched)
	}
	for _, up := range ups[:3] {
		if c := perServer[up.Addr()]; c < 200 || c > 470 {
			t.Errorf("%s got %d of %d clients; want about a third (%v)", up.Addr(), c, n, perServer)
		}
	}
	if err := set.Update(context.Background(), listOf(ups), ClientIP); err != nil {
		t.Fatal(err)
	}
	newcomer := ups[3].Addr()
	moved := 0
	for i := range n {
		l := getFor(t, set, ipOf(i), 5001)
		after := upstreamOf(l)
		l.Release(untouched)
		if after == before[i] {
			continue
		}
		if after != newcomer {
			t.Fatalf("client %s moved from %s to %s, not to the new server %s", ipOf(i), before[i], after, newcomer)
		}
		moved++
	}
	// 250 expected (sd 14).
	if moved < 150 || moved > 350 {
		t.Errorf("%d of %d clients moved to the new server; want about a quarter", moved, n)
	}
}
