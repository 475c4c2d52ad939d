package listener

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/pool"
)

// graceful is an upstream that answers each line with itself and can be
// stopped the way a server shuts down: Stop closes its listener (dials
// are refused from then on) and each conn is closed as soon as it has
// answered the request it is in (or its next one), so that no request
// already sent to it is lost. Whatever is left is closed when the test
// ends.
type graceful struct {
	ln       net.Listener
	stopping atomic.Bool
	accepts  atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startGraceful(tb testing.TB) *graceful {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := &graceful{ln: ln, conns: make(map[net.Conn]struct{})}
	g.wg.Add(1)
	go g.serve()
	tb.Cleanup(func() {
		g.Stop()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *graceful) Addr() string { return g.ln.Addr().String() }

func (g *graceful) Stop() {
	g.stopping.Store(true)
	g.ln.Close()
}

func (g *graceful) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepts.Add(1)
		g.mu.Lock()
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				g.mu.Lock()
				delete(g.conns, c)
				g.mu.Unlock()
				c.Close()
			}()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, line); err != nil || g.stopping.Load() {
					return
				}
			}
		}()
	}
}

// startSetProxy serves a ProxyListener in front of set until the test
// ends.
func startSetProxy(tb testing.TB, set *balance.Set, cfg Config) *ProxyListener {
	tb.Helper()
	tb.Cleanup(func() { set.Close() }) // after the listener's own cleanup
	return newProxy(tb, set, cfg)
}

// TestSetServerStoppedMidRun: clients send requests in a loop, each on a
// connection of its own, through a ProxyListener in front of a
// balance.Set of 3 servers; one server stops mid-run. Every request gets
// its answer: the stopped server's refused dials fail over to the others,
// and it is ejected.
func TestSetServerStoppedMidRun(t *testing.T) {
	ups := []*graceful{startGraceful(t), startGraceful(t), startGraceful(t)}
	var servers []balance.Server
	for _, u := range ups {
		servers = append(servers, balance.Server{Addr: u.Addr()})
	}
	set, err := balance.New(balance.Config{
		Servers: servers,
		Pool:    pool.Config{Spares: 8},
		Passive: balance.Passive{Failures: 3, Ejection: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := startSetProxy(t, set, Config{})
	if l.Pool() != nil || l.Upstream() != set {
		t.Errorf("Pool: %v, Upstream: %v; want nil and the set", l.Pool(), l.Upstream())
	}

	const clients, before, after = 4, 20, 50
	var stopped atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	progress := make([]atomic.Int64, clients)
	deadline := time.Now().Add(20 * time.Second)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			afterStop := 0
			for n := 0; afterStop < after; n++ {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("client %d: out of time after %d requests", i, n)
					return
				}
				if stopped.Load() {
					afterStop++
				}
				req := fmt.Sprintf("REQ %d-%d\n", i, n)
				c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
				if err != nil {
					errs <- fmt.Errorf("client %d: %v", i, err)
					return
				}
				got, err := exchange(c, req)
				c.Close()
				if err != nil || got != req {
					errs <- fmt.Errorf("client %d, request %d (after the stop: %v): got %q, %v", i, n, stopped.Load(), got, err)
					return
				}
				progress[i].Add(1)
			}
		}()
	}
	waitFor(t, "the clients to get going", func() bool {
		for i := range progress {
			if progress[i].Load() < before {
				return false
			}
		}
		return true
	})
	gone := ups[1]
	gone.Stop()
	stopped.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, st := range set.Servers() {
		if st.Addr == gone.Addr() && st.State != balance.StateEjected {
			t.Errorf("stopped server: state %v (%d failed dials); want ejected", st.State, st.DialFailures)
		}
	}
	if st := l.Stats(); st.UpstreamFailures != 0 {
		t.Errorf("listener: %d upstream failures; want 0", st.UpstreamFailures)
	}
}

// TestSetClientIPThroughListener: with the client-ip policy, a client's
// connections, from its own source IP, all reach the same server.
func TestSetClientIPThroughListener(t *testing.T) {
	var servers []balance.Server
	for range 3 {
		s := startServer(t, func(c net.Conn) {
			io.WriteString(c, c.LocalAddr().String()+"\n")
			io.Copy(io.Discard, c)
		})
		servers = append(servers, balance.Server{Addr: s.Addr()})
	}
	set, err := balance.New(balance.Config{Servers: servers, Policy: balance.ClientIP})
	if err != nil {
		t.Fatal(err)
	}
	l := startSetProxy(t, set, Config{})
	whoAnswers := func(ip string) string {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Skipf("dial from %s: %v", ip, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("client %s: %v", ip, err)
		}
		return line
	}
	seen := make(map[string]bool)
	for i := 1; i <= 12; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i)
		first := whoAnswers(ip)
		seen[first] = true
		for range 3 {
			if got := whoAnswers(ip); got != first {
				t.Fatalf("client %s reached %q, then %q", ip, first, got)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("12 client IPs all reached one server")
	}
	if st := l.Stats(); st.Pool.Dials == 0 {
		t.Errorf("Stats.Pool: %+v; want the set's pools' figures", st.Pool)
	}
}
