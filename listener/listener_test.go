package listener

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/nettest"

	"github.com/relaykit/relay/pool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewValidates(t *testing.T) {
	p, err := pool.New(pool.Config{Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"negative MaxSessions", Config{MaxSessions: -1}, "Config.MaxSessions"},
		{"negative SessionIdleTimeout", Config{SessionIdleTimeout: -time.Second}, "Config.SessionIdleTimeout"},
		{"negative DrainTimeout", Config{DrainTimeout: -time.Second}, "Config.DrainTimeout"},
		{"negative GetTimeout", Config{GetTimeout: -time.Second}, "Config.GetTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ln, p, tt.cfg)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.field)) {
				t.Fatalf("got %v; want an error naming %s", err, tt.field)
			}
		})
	}
	if _, err := New(nil, p, Config{}); err == nil {
		t.Error("New(nil listener): got nil error; want one")
	}
	if _, err := New(ln, nil, Config{}); err == nil {
		t.Error("New(nil pool): got nil error; want one")
	}
}

// TestIntegrityConcurrent sends distinct random payloads through many
// concurrent sessions to an echo upstream and checks every byte.
func TestIntegrityConcurrent(t *testing.T) {
	up := startServer(t, echo)
	for _, policy := range []pool.Policy{pool.ReuseNever, pool.ReuseIfClean} {
		t.Run(policy.String(), func(t *testing.T) {
			l := startProxy(t, pool.Config{Addr: up.Addr(), Spares: 4, MaxIdle: pool.DefaultMaxIdle, Reuse: policy}, Config{})
			const clients, size = 32, 256 << 10
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// With reuse, a FIN ends the reply after a quiet
					// drain period, so the client reads a known length.
					errs <- roundTrip(l.Addr().String(), uint64(i), size, policy == pool.ReuseNever)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			// No OnSessionEnd and no debug log: the byte counts come
			// from the stats alone.
			waitFor(t, "every session to end", func() bool { return l.Stats().Active == 0 })
			st := l.Stats()
			if st.Sessions != clients {
				t.Errorf("Stats.Sessions: got %d; want %d", st.Sessions, clients)
			}
			if want := uint64(clients * size); st.BytesToUpstream != want || st.BytesToClient != want {
				t.Errorf("Stats bytes: got %d to upstream, %d to client; want %d each",
					st.BytesToUpstream, st.BytesToClient, want)
			}
		})
	}
}

// roundTrip writes size pseudo-random bytes and checks that the echo
// carries the same bytes back. With halfClose the client ends its request
// with a FIN and reads to EOF; otherwise it reads exactly size bytes, as a
// request/response client does.
func roundTrip(addr string, seed uint64, size int, halfClose bool) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, size)
	fill(payload, seed)
	want := sha256.Sum256(payload)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil && halfClose {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	var n int64
	if halfClose {
		n, err = io.Copy(h, c)
	} else {
		n, err = io.CopyN(h, c, int64(size))
	}
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", n, size)
	}
	return nil
}

func TestServeReturnsErrClosed(t *testing.T) {
	up := startServer(t, echo)
	l, served := startProxyServe(t, pool.Config{Addr: up.Addr()}, Config{})
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := <-served
	if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: got %v; want ErrClosed matching net.ErrClosed", err)
	}
	// Serve after Close returns at once; Close and Shutdown again are no-ops.
	if err := l.Serve(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: got %v; want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
}

// TestUpstreamDownThenBack: while the upstream is down every client is
// closed promptly and counted; when it is back, clients are served again.
func TestUpstreamDownThenBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	up := serveOn(t, ln, echo)
	l := startProxy(t, pool.Config{Addr: addr, Spares: 2, DialTimeout: time.Second}, Config{GetTimeout: 2 * time.Second})

	if got, err := exchange(dial(t, l.Addr().String()), "one\n"); err != nil || got != "one\n" {
		t.Fatalf("before: got %q, %v; want the echo", got, err)
	}

	up.Close()
	for i := range 3 {
		c := dial(t, l.Addr().String())
		got, err := exchange(c, "lost\n")
		c.Close()
		if err == nil {
			t.Fatalf("down #%d: got %q; want the client closed", i, got)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("down #%d: client hung until its own deadline; want it closed at once", i)
		}
	}
	if st := l.Stats(); st.UpstreamFailures == 0 {
		t.Fatalf("Stats.UpstreamFailures: got 0; want the failures counted")
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	serveOn(t, ln2, echo)
	waitFor(t, "the upstream to serve again", func() bool {
		c := dial(t, l.Addr().String())
		defer c.Close()
		got, err := exchange(c, "back\n")
		return err == nil && got == "back\n"
	})
}

// TestUpstreamResetMidStream: an upstream that resets during a reply
// ends that client's session promptly, and the next client is served.
func TestUpstreamResetMidStream(t *testing.T) {
	var n atomic.Int64
	up := startServer(t, func(c net.Conn) {
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err != nil {
			return
		}
		if n.Add(1) == 1 {
			c.Write(bytes.Repeat([]byte("x"), 1000))
			c.(*net.TCPConn).SetLinger(0) // RST on close
			return
		}
		c.Write([]byte("fine\n"))
	})
	var log sessionLog
	l := startProxy(t, pool.Config{Addr: up.Addr(), MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean}, Config{OnSessionEnd: log.add})

	c := dial(t, l.Addr().String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("go\n"))
	got, err := io.ReadAll(c)
	c.Close()
	if len(got) > 1000 {
		t.Fatalf("got %d bytes; want at most the 1000 sent before the reset", len(got))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("client hung after the upstream reset")
	}

	c2 := dial(t, l.Addr().String())
	got2, err := exchange(c2, "again\n")
	c2.Close()
	if err != nil || got2 != "fine\n" {
		t.Fatalf("after reset: got %q, %v; want %q", got2, err, "fine\n")
	}
	infos := log.wait(t, 2)
	if infos[0].Outcome.Kept() {
		t.Errorf("reset upstream: outcome %v; want it closed", infos[0].Outcome)
	}
}

// TestServerClosesIdlePooledConns: an upstream that drops its idle conns
// never fails a client, though the pool holds spares and used conns.
//
// The server drops them when the test says so, between sessions. (This
// used to drop them on a 30 ms read deadline counted from the accept,
// which a busy machine could let expire in the middle of a client's
// exchange on a spare, so that the exchange itself met the close.)
func TestServerClosesIdlePooledConns(t *testing.T) {
	up := startServer(t, echo)
	l := startProxy(t, pool.Config{Addr: up.Addr(), Spares: 2, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean}, Config{})
	for i := range 6 {
		waitFor(t, "the last session over", func() bool { return l.Stats().Active == 0 })
		up.CloseConns() // every pooled conn, spare or used, is now dead
		c := dial(t, l.Addr().String())
		got, err := exchange(c, "ping\n")
		c.Close()
		if err != nil || got != "ping\n" {
			t.Fatalf("session %d: got %q, %v; want the echo", i, got, err)
		}
	}
	if st := l.Stats().Pool; st.Closed[pool.ClosedDead] == 0 {
		t.Errorf("pool closes for dead conns: got 0; want the dropped conns detected (stats %+v)", st)
	}
}

// TestGracefulShutdown: Shutdown lets transfers in flight finish intact,
// refuses new clients, and Serve returns ErrClosed.
func TestGracefulShutdown(t *testing.T) {
	up := startServer(t, echo)
	l, served := startProxyServe(t, pool.Config{Addr: up.Addr(), Spares: 2}, Config{})

	const clients, size = 4, 4 << 20
	// Each client sends its first byte, so that its session is live
	// before Shutdown, and the rest only once Shutdown has begun, so that
	// the transfers happen during the drain. (This used to sleep 50 ms
	// instead, and failed when a busy machine let the sessions end before
	// the test saw them all live.)
	proceed := make(chan struct{})
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			payload := make([]byte, size)
			fill(payload, uint64(i)+1000)
			go func() {
				c.Write(payload[:1])
				<-proceed
				c.Write(payload[1:])
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, payload) {
				err = errors.New("payload differs after graceful shutdown")
			}
			errs <- err
		}()
	}
	waitFor(t, "sessions to be live", func() bool { return l.Stats().Active == clients })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- l.Shutdown(ctx) }()
	// Shutdown has begun once the listener refuses new clients.
	waitFor(t, "Shutdown to close the listener", func() bool {
		c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(proceed)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve: got %v; want ErrClosed", err)
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial after Shutdown succeeded; want it refused")
	}
}

// TestShutdownDeadlineCuts: sessions that outlive Shutdown's ctx are
// interrupted, their upstreams released, and Shutdown reports ctx's error.
func TestShutdownDeadlineCuts(t *testing.T) {
	up := startServer(t, echo)
	l := startProxy(t, pool.Config{Addr: up.Addr()}, Config{})
	c := dial(t, l.Addr().String())
	defer c.Close()
	if _, err := exchange(c, "hold\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: got %v; want context.DeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("client read %d bytes after the cut; want its conn closed", n)
	}
	st := l.Stats()
	if st.Active != 0 || st.Interrupted != 1 || st.Pool.InUse != 0 {
		t.Fatalf("after cut: Active=%d Interrupted=%d Pool.InUse=%d; want 0, 1, 0", st.Active, st.Interrupted, st.Pool.InUse)
	}
}

// TestMaxSessions: at the cap, further clients wait in the kernel's
// backlog and are served when a session ends.
func TestMaxSessions(t *testing.T) {
	up := startServer(t, echo)
	l := startProxy(t, pool.Config{Addr: up.Addr()}, Config{MaxSessions: 2})
	a, b := dial(t, l.Addr().String()), dial(t, l.Addr().String())
	defer a.Close()
	defer b.Close()
	for _, c := range []net.Conn{a, b} {
		if _, err := exchange(c, "x\n"); err != nil {
			t.Fatal(err)
		}
	}
	third := dial(t, l.Addr().String()) // completes in the backlog
	defer third.Close()
	third.Write([]byte("third\n"))
	third.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := third.Read(make([]byte, 16)); err == nil {
		t.Fatalf("third client got %d bytes while at MaxSessions; want none", n)
	}
	if st := l.Stats(); st.Active != 2 {
		t.Fatalf("Active: got %d; want 2", st.Active)
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(third, buf, len("third\n"))
	if err != nil || string(buf[:n]) != "third\n" {
		t.Fatalf("third after a slot freed: got %q, %v; want the echo", buf[:n], err)
	}
}

// flakyListener returns errs from Accept before passing on to the real one.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func TestAcceptErrors(t *testing.T) {
	up := startServer(t, echo)
	p, err := pool.New(pool.Config{Addr: up.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	t.Run("temporary errors back off and Serve goes on", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &flakyListener{Listener: ln, errs: []error{
			&net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE},
			&net.OpError{Op: "accept", Net: "tcp", Err: syscall.ENFILE},
			&net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNABORTED},
		}}
		l, err := New(fl, p, Config{})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- l.Serve() }()
		t.Cleanup(func() { l.Close() }) // also when the test fails first
		if got, err := exchange(dial(t, l.Addr().String()), "ok\n"); err != nil || got != "ok\n" {
			t.Fatalf("after temporary errors: got %q, %v; want the echo", got, err)
		}
		if st := l.Stats(); st.AcceptErrors != 3 {
			t.Errorf("AcceptErrors: got %d; want 3", st.AcceptErrors)
		}
		l.Close()
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Fatalf("Serve: got %v; want ErrClosed", err)
		}
	})
	t.Run("a permanent error ends Serve", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("listener broke")
		l, err := New(&flakyListener{Listener: ln, errs: []error{boom}}, p, Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Serve(); !errors.Is(err, boom) {
			t.Fatalf("Serve: got %v; want %v", err, boom)
		}
		l.Close()
	})
}

func TestNextBackoff(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 10 {
		d = nextBackoff(d)
		got = append(got, d)
	}
	if got[0] != 5*time.Millisecond || got[1] != 10*time.Millisecond || got[9] != time.Second {
		t.Fatalf("backoff: got %v; want 5ms doubling up to 1s", got)
	}
}

// TestFDsBackToBaseline runs 1000 sessions and checks that the process
// holds no more descriptors afterwards than before.
func TestFDsBackToBaseline(t *testing.T) {
	up := startServer(t, echo)
	run := func(n int) {
		p, err := pool.New(pool.Config{Addr: up.Addr(), Spares: 2, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := New(ln, p, Config{})
		if err != nil {
			t.Fatal(err)
		}
		go l.Serve()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				if i%3 == 0 {
					return // hang up at once
				}
				if _, err := exchange(c, "fd\n"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		p.Close()
	}
	run(20) // warm up: pipes and runtime descriptors
	before := countFDs(t)
	run(1000)
	waitFor(t, "descriptors back to baseline", func() bool { return countFDs(t) <= before })
}

// TestNettestConn runs x/net/nettest's conformance suite on a conn pair
// joined through the forwarder: the client's conn, and the conn the
// upstream accepted for that session.
func TestNettestConn(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upLn.Close()
	// No spares and no reuse: each session dials the upstream once, so the
	// next accept on upLn is the session's own upstream conn.
	l := startProxy(t, pool.Config{Addr: upLn.Addr().String()}, Config{})
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, err = net.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2, err = upLn.Accept()
		if err != nil {
			c1.Close()
			return nil, nil, nil, err
		}
		stop = func() {
			c1.Close()
			c2.Close()
		}
		return c1, c2, stop, nil
	})
}
