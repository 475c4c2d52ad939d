package balance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/loopback"
	"github.com/relaykit/relay/pool"
)

// testServer is a loopback server a test starts. Stop closes its
// listener and its conns; Restart listens again on the same address. It
// stops by itself when the test ends.
type testServer struct {
	tb     testing.TB
	addr   string
	handle func(net.Conn)

	mu sync.Mutex
	s  *loopback.Server
}

func startServer(tb testing.TB, handle func(net.Conn)) *testServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveOn(tb, ln, handle)
}

func serveOn(tb testing.TB, ln net.Listener, handle func(net.Conn)) *testServer {
	return &testServer{tb: tb, addr: ln.Addr().String(), handle: handle, s: loopback.Serve(tb, ln, handle)}
}

func (s *testServer) Addr() string { return s.addr }

// Stop closes the listener, so that dials are refused, and every conn.
func (s *testServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s.Close()
}

// Restart listens on the same address again.
func (s *testServer) Restart() {
	s.tb.Helper()
	var ln net.Listener
	var err error
	waitFor(s.tb, "listening on "+s.addr+" again", func() bool {
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = loopback.Serve(s.tb, ln, s.handle)
}

// Accepts counts the conns the current listener accepted.
func (s *testServer) Accepts() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Accepts()
}

// serveLines answers each line with what reply returns, until the conn
// ends.
func serveLines(reply func(line string) string) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, reply(line)); err != nil {
				return
			}
		}
	}
}

// echo answers each line with itself.
var echo = serveLines(func(line string) string { return line })

// startEchos starts n echo servers.
func startEchos(tb testing.TB, n int) []*testServer {
	out := make([]*testServer, n)
	for i := range out {
		out[i] = startServer(tb, echo)
	}
	return out
}

// listOf returns the servers' addresses as a Config.Servers list, with
// weights when given.
func listOf(servers []*testServer, weights ...int) []Server {
	out := make([]Server, len(servers))
	for i, s := range servers {
		out[i] = Server{Addr: s.Addr()}
		if i < len(weights) {
			out[i].Weight = weights[i]
		}
	}
	return out
}

// newSet creates a Set closed when the test ends (before the servers
// started earlier stop).
func newSet(tb testing.TB, cfg Config) *Set {
	tb.Helper()
	set, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { set.Close() })
	return set
}

// get is Get under a generous bound, failing the test on error.
func get(tb testing.TB, set *Set) pool.Lease {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := set.Get(ctx)
	if err != nil {
		tb.Fatalf("Get: %v", err)
	}
	return l
}

// getFor is GetFor a client at ip.
func getFor(tb testing.TB, set *Set, ip string, port int) pool.Lease {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := set.GetFor(ctx, &net.TCPAddr{IP: net.ParseIP(ip), Port: port})
	if err != nil {
		tb.Fatalf("GetFor(%s): %v", ip, err)
	}
	return l
}

// upstreamOf returns the address the lease's conn is connected to.
func upstreamOf(l pool.Lease) string { return l.Conn().RemoteAddr().String() }

// untouched is the verdict of a lease given back without a byte moved;
// clean that of a session that went well.
var (
	untouched = pool.Verdict{}
	clean     = pool.Verdict{Used: true, Clean: true}
)

// exchange sends msg as a line and returns the reply line.
func exchange(c net.Conn, msg string) (string, error) {
	if c == nil {
		return "", errors.New("nil conn")
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	var b strings.Builder
	var one [1]byte
	for {
		n, err := c.Read(one[:])
		if n == 1 {
			if one[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(one[0])
		}
		if err != nil {
			return b.String(), err
		}
	}
}

// roundTrip checks that the lease's conn answers; call it on the test's
// goroutine.
func roundTrip(tb testing.TB, l pool.Lease, msg string) {
	tb.Helper()
	got, err := exchange(l.Conn(), msg)
	if err != nil || got != msg {
		tb.Fatalf("exchange %q with %s: got %q, %v", msg, upstreamOf(l), got, err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// statsOf returns the stats of the server at addr, and whether the set
// lists it.
func statsOf(set *Set, addr string) (ServerStats, bool) {
	for _, st := range set.Servers() {
		if st.Addr == addr {
			return st, true
		}
	}
	return ServerStats{}, false
}

// stateOf returns the state of the server at addr; it fails the test
// when the set does not list it.
func stateOf(tb testing.TB, set *Set, addr string) State {
	tb.Helper()
	st, ok := statsOf(set, addr)
	if !ok {
		tb.Fatalf("server %s not listed: %+v", addr, set.Servers())
	}
	return st.State
}

// countBy tallies the upstreams of n Get+Release rounds.
func countBy(tb testing.TB, set *Set, n int) map[string]int {
	tb.Helper()
	got := make(map[string]int)
	for range n {
		l := get(tb, set)
		got[upstreamOf(l)]++
		l.Release(untouched)
	}
	return got
}

// syscallRefused is the error of a dial to a closed port.
var syscallRefused = syscall.ECONNREFUSED

type netipAddr = netip.Addr

// tcpAddr is a synthetic client address, 127.0.0.(i+1).
func tcpAddr(i int) net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1)), Port: 40000 + i}
}
