package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// ProxyListener forwards every connection accepted from a net.Listener to
// an upstream connection taken from a pool, or from a set of pools. It is
// safe for concurrent use.
//
// Create it with New (a pool, or a balance.Set, of your own) or NewAddr
// (an address), run Serve, and stop it with Shutdown or Close.
type ProxyListener struct {
	ln       net.Listener
	def      *target // the default Upstream; nil when New was given none
	routes   *routes // by server name; nil without Config.Routes
	ownsPool bool    // the pool was made by NewAddr and is closed with us
	cfg      Config
	log      logger
	perIP    *perIP // nil without MaxSessionsPerIP
	refusals refusalLog

	// verdict turns a session's result into the pool's verdict. Nil means
	// the real rules (verdictOf); tests replace it to prove those rules
	// are what keeps clients apart.
	verdict func(*splice.Result) pool.Verdict
	// linger bounds a client's lingering close (see shutClient):
	// LingerTimeout; tests change it.
	linger time.Duration

	// sem holds one token per running session when MaxSessions > 0.
	sem chan struct{}

	// hardCtx is canceled when live sessions must be cut (Close, or
	// Shutdown's ctx ending); every session's copy runs under it.
	hardCtx    context.Context
	hardCancel context.CancelFunc

	mu sync.Mutex
	// done is closed, under mu, when Shutdown or Close is called. A
	// session is registered (sessWG.Add) under mu only while it is open,
	// so the stop verbs' Wait never races with an Add.
	done     chan struct{}
	sessions map[*session]struct{}
	nextID   uint64
	serveWG  sync.WaitGroup // running Serve loops
	sessWG   sync.WaitGroup // running sessions

	stopOnce sync.Once
	stopErr  error // from closing the wrapped listener and the owned pool

	stats stats
}

// New returns a ProxyListener that accepts from ln and forwards to
// connections from p: a *pool.Pool, or a *balance.Set for several
// servers. It takes ownership of ln (Shutdown and Close close it) but not
// of p: close p after Shutdown or Close returned.
//
// With Config.Routes, p is the default route, and may be nil: a client
// that no route takes is then refused.
func New(ln net.Listener, p Upstream, cfg Config) (*ProxyListener, error) {
	if ln == nil {
		return nil, errors.New("listener: New: nil net.Listener")
	}
	if isNilPool(p) {
		p = nil
	}
	if p == nil && len(cfg.Routes) == 0 {
		return nil, errors.New("listener: New: nil Upstream (and no Config.Routes)")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &ProxyListener{
		ln:       ln,
		cfg:      cfg,
		log:      logger{cfg.logger()},
		done:     make(chan struct{}),
		sessions: make(map[*session]struct{}),
		linger:   LingerTimeout,
	}
	// One target per distinct Upstream, found by ==, not by a map key: an
	// Upstream of a type that cannot be hashed must not panic.
	var targets []*target
	targetOf := func(up Upstream) (*target, error) {
		for _, t := range targets {
			if t.up == up {
				return t, nil
			}
		}
		t, err := newTarget(up, &cfg)
		if err == nil {
			targets = append(targets, t)
		}
		return t, err
	}
	var err error
	if p != nil {
		if l.def, err = targetOf(p); err != nil {
			return nil, err
		}
	}
	if l.routes, err = newRoutes(cfg.Routes, targetOf); err != nil {
		return nil, err
	}
	if cfg.MaxSessionsPerIP > 0 {
		l.perIP = &perIP{max: cfg.MaxSessionsPerIP, n: map[netip.Addr]int{}}
	}
	if cfg.MaxSessions > 0 {
		l.sem = make(chan struct{}, cfg.MaxSessions)
	}
	l.hardCtx, l.hardCancel = context.WithCancel(context.Background())
	return l, nil
}

// NewAddr returns a ProxyListener that forwards to the TCP address
// upstream through a pool of its own (ReuseNever, DefaultSpares warm
// spares). The pool is closed with the ProxyListener.
func NewAddr(ln net.Listener, upstream string, cfg Config) (*ProxyListener, error) {
	if upstream == "" {
		return nil, errors.New("listener: NewAddr: empty upstream address")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p, err := pool.New(pool.Config{Addr: upstream, Spares: DefaultSpares, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	l, err := New(ln, p, cfg)
	if err != nil {
		p.Close()
		return nil, err
	}
	l.ownsPool = true
	return l, nil
}

// Addr returns the wrapped listener's address.
func (l *ProxyListener) Addr() net.Addr { return l.ln.Addr() }

// Pool returns the pool that upstream connections come from, or nil when
// they come from another Upstream (a balance.Set) or New was given none.
func (l *ProxyListener) Pool() *pool.Pool {
	if l.def == nil {
		return nil
	}
	p, _ := l.def.up.(*pool.Pool)
	return p
}

// Upstream returns the default Upstream, as given to New (nil if none).
func (l *ProxyListener) Upstream() Upstream {
	if l.def == nil {
		return nil
	}
	return l.def.up
}

// target is an Upstream with what a session needs to use it.
type target struct {
	up     Upstream
	getFor ClientUpstream // up, when it picks by client; else nil
	opts   splice.Options
}

func newTarget(up Upstream, cfg *Config) (*target, error) {
	if cfg.SendProxy != ProxyNone && up.Policy() != pool.ReuseNever {
		return nil, fmt.Errorf("listener: Config.SendProxy %s with an Upstream of reuse policy %s: "+
			"a connection that carried a PROXY header belongs to its client; use pool.ReuseNever", cfg.SendProxy, up.Policy())
	}
	t := &target{
		up: up,
		opts: splice.Options{
			IdleTimeout:   cfg.SessionIdleTimeout,
			DrainTimeout:  cfg.drainTimeout(up.ResetDrains()),
			Reuse:         up.Policy() != pool.ReuseNever,
			DrainOwedOnly: up.ResetDrains(),
		},
	}
	t.getFor, _ = up.(ClientUpstream)
	return t, nil
}

// isNilPool reports whether p is a nil *pool.Pool in an interface.
func isNilPool(p Upstream) bool {
	pp, ok := p.(*pool.Pool)
	return ok && pp == nil
}

// Serve accepts connections and forwards each on its own goroutine until
// the ProxyListener is shut down or the wrapped listener fails for good.
// Temporary accept errors (such as running out of file descriptors) are
// logged and retried with a backoff from 5 ms doubling to 1 s.
//
// Serve always returns a non-nil error: ErrClosed (which matches
// net.ErrClosed) after Shutdown or Close, else the wrapped listener's
// error. It may be called from several goroutines at once.
func (l *ProxyListener) Serve() error {
	l.mu.Lock()
	if l.closed() {
		l.mu.Unlock()
		return ErrClosed
	}
	l.serveWG.Add(1)
	l.mu.Unlock()
	defer l.serveWG.Done()

	var backoff time.Duration
	for {
		if !l.acquireSlot() {
			return ErrClosed
		}
		c, err := l.ln.Accept()
		if err != nil {
			l.releaseSlot()
			if l.closed() {
				return ErrClosed
			}
			if !temporary(err) {
				l.log.acceptFailed(err, 0)
				return fmt.Errorf("listener: accept: %w", err)
			}
			backoff = nextBackoff(backoff)
			l.stats.acceptErrors.Add(1)
			l.log.acceptFailed(err, backoff)
			if !l.sleep(backoff) {
				return ErrClosed
			}
			continue
		}
		backoff = 0
		if !l.startSession(c) {
			c.Close()
			l.releaseSlot()
			return ErrClosed
		}
	}
}

// acquireSlot waits for a free session slot under MaxSessions. It reports
// false when the ProxyListener is closing.
func (l *ProxyListener) acquireSlot() bool {
	if l.sem == nil {
		return !l.closed()
	}
	select {
	case l.sem <- struct{}{}:
		return true
	case <-l.done:
		return false
	}
}

func (l *ProxyListener) releaseSlot() {
	if l.sem != nil {
		<-l.sem
	}
}

func (l *ProxyListener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// closed reports whether Shutdown or Close was called.
func (l *ProxyListener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// nextBackoff doubles d from 5 ms up to 1 s, as net/http's Serve does.
func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// temporary reports whether an accept error is worth retrying: the
// descriptor limits, and whatever the error itself calls temporary
// (ECONNABORTED, EINTR, EAGAIN and the like).
func temporary(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting at once, lets live sessions finish until ctx
// ends, then interrupts the rest (their upstreams are released, not
// leaked), and waits for every Serve loop and session goroutine to return.
// It returns ctx's error if it had to interrupt sessions, else the error
// from closing the wrapped listener (and the pool made by NewAddr), if any.
// It is safe to call concurrently and more than once.
func (l *ProxyListener) Shutdown(ctx context.Context) error {
	l.beginClose()
	idle := make(chan struct{})
	go func() {
		l.sessWG.Wait()
		close(idle)
	}()
	var cut error
	select {
	case <-idle:
	case <-ctx.Done():
		cut = ctx.Err()
		l.hardCancel()
		<-idle
	}
	l.serveWG.Wait()
	err := l.finish()
	if cut != nil {
		return cut
	}
	return err
}

// Close stops accepting and interrupts every live session now, then waits
// for their goroutines like Shutdown. It is safe to call concurrently and
// more than once.
func (l *ProxyListener) Close() error {
	l.beginClose()
	l.hardCancel()
	l.sessWG.Wait()
	l.serveWG.Wait()
	return l.finish()
}

// beginClose marks the ProxyListener closing and closes the wrapped
// listener so that blocked Accepts return.
func (l *ProxyListener) beginClose() {
	l.mu.Lock()
	if !l.closed() {
		close(l.done)
		if err := l.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			l.stopErr = fmt.Errorf("listener: close: %w", err)
		}
	}
	l.mu.Unlock()
}

// finish runs once all goroutines are gone: it closes the owned pool.
func (l *ProxyListener) finish() error {
	l.stopOnce.Do(func() {
		l.hardCancel()
		if l.ownsPool {
			if err := l.def.up.(*pool.Pool).Close(); err != nil && l.stopErr == nil {
				l.stopErr = err
			}
		}
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopErr
}

// Sessions returns a snapshot of the live sessions, oldest first.
func (l *ProxyListener) Sessions() []SessionState {
	l.mu.Lock()
	out := make([]SessionState, 0, len(l.sessions))
	for s := range l.sessions {
		out = append(out, s.state())
	}
	l.mu.Unlock()
	sortStates(out)
	return out
}

var _ interface {
	Serve() error
	Shutdown(context.Context) error
	Close() error
	Addr() net.Addr
} = (*ProxyListener)(nil)
