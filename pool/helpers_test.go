package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/logbuf"
	"github.com/relaykit/relay/internal/loopback"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a loopback server started by a test; each accepted conn is
// served by handle on a goroutine of its own. Close (run by Cleanup)
// closes the listener and every conn, and waits for the goroutines.
type upstream struct {
	ln      net.Listener
	handle  func(net.Conn)
	wg      sync.WaitGroup
	accepts atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startUpstream(tb testing.TB, handle func(net.Conn)) *upstream {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveUpstream(tb, ln, handle)
}

// serveUpstream is startUpstream on a listener of the test's own (a TLS
// one, say).
func serveUpstream(tb testing.TB, ln net.Listener, handle func(net.Conn)) *upstream {
	u := &upstream{ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	u.wg.Add(1)
	go u.serve()
	tb.Cleanup(u.Close)
	return u
}

func (u *upstream) Addr() string { return u.ln.Addr().String() }

func (u *upstream) serve() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepts.Add(1)
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() {
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
				c.Close()
			}()
			u.handle(c)
		}()
	}
}

// CloseConns closes the server side of every open conn, returning once
// each client has taken its FIN (see loopback.CloseConns).
func (u *upstream) CloseConns() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.conns {
		loopback.CloseSeen(c)
	}
}

// Open returns how many conns the server holds.
func (u *upstream) Open() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

func (u *upstream) Close() {
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// readLine reads one '\n'-terminated line a byte at a time, so that
// nothing after it is consumed.
func readLine(c net.Conn) (string, error) {
	var b strings.Builder
	var one [1]byte
	for {
		n, err := c.Read(one[:])
		if n == 1 {
			b.WriteByte(one[0])
			if one[0] == '\n' {
				return b.String(), nil
			}
		}
		if err != nil {
			return b.String(), err
		}
	}
}

// serveLines answers each line with what reply returns (nothing when
// empty) until the conn ends.
func serveLines(reply func(c net.Conn, line string) string) func(net.Conn) {
	return func(c net.Conn) {
		for {
			line, err := readLine(c)
			if err != nil {
				return
			}
			if r := reply(c, line); r != "" {
				if _, err := io.WriteString(c, r); err != nil {
					return
				}
			}
		}
	}
}

// echo answers each line with itself.
var echo = serveLines(func(_ net.Conn, line string) string { return line })

// exchange sends msg as a line and returns the reply line, without its
// newline. It leaves no deadline behind. Safe on any goroutine.
func exchange(c net.Conn, msg string) (string, error) {
	if c == nil {
		return "", errors.New("nil conn")
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := readLine(c)
	return strings.TrimSuffix(line, "\n"), err
}

// roundTrip is exchange failing the test on error; call it only on the
// test's goroutine.
func roundTrip(tb testing.TB, c net.Conn, msg string) string {
	tb.Helper()
	got, err := exchange(c, msg)
	if err != nil {
		tb.Fatalf("exchange %q: got %q, %v", msg, got, err)
	}
	return got
}

// newPool creates a pool closed by Cleanup (before any upstream created
// earlier).
func newPool(tb testing.TB, cfg Config) *Pool {
	tb.Helper()
	requirePeekFor(tb, cfg.Reuse)
	p, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func mustGet(tb testing.TB, p *Pool) Lease {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := p.Get(ctx)
	if err != nil {
		tb.Fatalf("Get: %v", err)
	}
	return l
}

// eventually polls cond until it holds, failing the test after a
// generous limit.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var clean = Verdict{Used: true, Clean: true}

// logBuffer is a slog destination safe for concurrent use.
type logBuffer struct{ logbuf.Buffer }

func (l *logBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// countingDialer wraps a dial func: it counts dials and, per conn, its
// closes, and tracks how many conns are open at once. Its conns keep
// NetConn, so the pool can still peek them.
type countingDialer struct {
	dial    func(ctx context.Context) (net.Conn, error)
	mu      sync.Mutex
	conns   []*countConn
	live    int
	maxLive int
}

type countConn struct {
	net.Conn
	d      *countingDialer
	closes atomic.Int32
}

func (c *countConn) NetConn() net.Conn { return c.Conn }

func (c *countConn) Close() error {
	if c.closes.Add(1) == 1 {
		c.d.mu.Lock()
		c.d.live--
		c.d.mu.Unlock()
	}
	return c.Conn.Close()
}

func (d *countingDialer) Dial(ctx context.Context) (net.Conn, error) {
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: c, d: d}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.live++
	d.maxLive = max(d.maxLive, d.live)
	d.mu.Unlock()
	return cc, nil
}

func tcpDial(addr string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

var errDown = errors.New("upstream down (test)")

// requirePeekFor skips a test of reuse where used conns cannot be vetted.
func requirePeekFor(tb testing.TB, reuse Policy) {
	tb.Helper()
	if reuse != ReuseNever && !canPeek {
		tb.Skip("reuse needs a socket peek, which this platform lacks")
	}
}
