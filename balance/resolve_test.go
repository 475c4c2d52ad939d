package balance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// fakeDNS answers a Resolve hook from a table the test changes.
type fakeDNS struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	calls int
}

func (d *fakeDNS) set(err error, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
	d.addrs = nil
	for _, ip := range ips {
		d.addrs = append(d.addrs, netip.MustParseAddr(ip))
	}
}

func (d *fakeDNS) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if host != "svc.test" {
		return nil, fmt.Errorf("lookup %s: no such host (test)", host)
	}
	return append([]netip.Addr(nil), d.addrs...), d.err
}

// echoPair starts echo servers on 127.0.0.1 and 127.0.0.2 with the same
// port, and returns the port.
func echoPair(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		ln1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := ln1.Addr().(*net.TCPAddr).Port
		ln2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
		if err != nil {
			ln1.Close() // taken on 127.0.0.2: try another port
			continue
		}
		serveOn(tb, ln1, echo)
		serveOn(tb, ln2, echo)
		return port
	}
	tb.Skip("no port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

// TestResolveMovesServers: when the name's answer changes, the address
// that left drains (its held session still works) and is gone once the
// session ends; the new one gets the sessions. A failed lookup keeps the
// last addresses.
func TestResolveMovesServers(t *testing.T) {
	port := echoPair(t)
	name := net.JoinHostPort("svc.test", strconv.Itoa(port))
	one := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	two := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.1")
	set := newSet(t, Config{Servers: []Server{{Addr: name}}, Resolve: dns.resolve, ResolveEvery: -1, Pool: keepUntouched})

	got := set.Servers()
	if len(got) != 1 || got[0].Addr != one || got[0].Name != name {
		t.Fatalf("Servers: %+v; want %s named %s", got, one, name)
	}
	held := get(t, set)
	if upstreamOf(held) != one {
		t.Fatalf("Get went to %s; want %s", upstreamOf(held), one)
	}

	dns.set(nil, "127.0.0.2")
	set.Resolve(t.Context())
	if s := stateOf(t, set, one); s != StateDraining {
		t.Fatalf("address gone from the answer, a session held: state %v; want draining", s)
	}
	if s := stateOf(t, set, two); s != StateUp {
		t.Fatalf("new address: state %v; want up", s)
	}
	roundTrip(t, held, "draining")
	for i := range 5 {
		l := get(t, set)
		if upstreamOf(l) != two {
			t.Fatalf("Get %d after the change went to %s; want %s", i, upstreamOf(l), two)
		}
		roundTrip(t, l, "moved")
		l.Release(clean)
	}
	held.Release(clean)
	if _, ok := statsOf(set, one); ok {
		t.Fatalf("drained address still listed: %+v", set.Servers())
	}

	// A lookup that fails keeps what the last one found.
	dns.set(errors.New("SERVFAIL (test)"))
	set.Resolve(t.Context())
	got = set.Servers()
	if len(got) != 1 || got[0].Addr != two || got[0].State != StateUp {
		t.Fatalf("after a failed lookup: %+v; want %s up", got, two)
	}
	l := get(t, set)
	roundTrip(t, l, "kept")
	l.Release(clean)

	// Both addresses: two servers with the entry's weight.
	dns.set(nil, "127.0.0.2", "127.0.0.1")
	set.Resolve(t.Context())
	got = set.Servers()
	if len(got) != 2 || got[0].Addr != one || got[1].Addr != two || got[0].State != StateUp {
		t.Fatalf("two addresses: %+v; want %s and %s up", got, one, two)
	}
	if n := len(countBy(t, set, 4)); n != 2 {
		t.Errorf("4 Gets over two addresses went to %d of them", n)
	}
}

// TestResolveEvery: the name is resolved again on its own.
func TestResolveEvery(t *testing.T) {
	port := echoPair(t)
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.1")
	set := newSet(t, Config{
		Servers:      []Server{{Addr: net.JoinHostPort("svc.test", strconv.Itoa(port)), Weight: 2}},
		Resolve:      dns.resolve,
		ResolveEvery: 10 * time.Millisecond,
	})
	dns.set(nil, "127.0.0.2")
	two := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	waitFor(t, "the new address to replace the old", func() bool {
		got := set.Servers()
		return len(got) == 1 && got[0].Addr == two && got[0].Weight == 2
	})
	l := get(t, set)
	if upstreamOf(l) != two {
		t.Errorf("Get went to %s; want %s", upstreamOf(l), two)
	}
	l.Release(untouched)
}

// TestNamedAndIPEntries: an IP entry and a name resolving to the same
// address are two servers; Update to IPs only keeps working.
func TestNamedAndIPEntries(t *testing.T) {
	port := echoPair(t)
	one := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dns := &fakeDNS{}
	dns.set(nil, "127.0.0.1")
	set := newSet(t, Config{
		Servers:      []Server{{Addr: one}, {Addr: net.JoinHostPort("svc.test", strconv.Itoa(port))}},
		Resolve:      dns.resolve,
		ResolveEvery: -1,
		Pool:         pool.Config{Spares: 1},
	})
	if got := set.Servers(); len(got) != 2 || got[0].Addr != one || got[1].Addr != one || got[0].Name == got[1].Name {
		t.Fatalf("Servers: %+v; want %s twice, under two names", got, one)
	}
	if err := set.Update(context.Background(), []Server{{Addr: one}}, RoundRobin); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the named entry to go", func() bool { return len(set.Servers()) == 1 })
	l := get(t, set)
	roundTrip(t, l, "ip")
	l.Release(clean)
}
