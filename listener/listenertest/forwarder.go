package listenertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// ErrClosed is returned by the Wait methods once the Forwarder is closed
// without the awaited condition having come true, and by dials after it.
var ErrClosed = errors.New("listenertest: forwarder closed")

// TB is the part of testing.TB that New uses: *testing.T, *testing.B and
// *testing.F satisfy it. An Example, which has no *testing.T, can pass a
// small value of its own (see the package examples).
type TB interface {
	Helper()
	Name() string
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Forwarder is a relay ProxyListener on loopback in front of an upstream
// address, with faults that a test sets and changes at any moment. All
// its methods are safe for concurrent use, and none but Close and the
// Wait methods waits for a session: a fault changed while sessions are
// live applies to their next chunk.
type Forwarder struct {
	upstream string
	seed     uint64
	addr     string
	stopWait time.Duration

	pl       *listener.ProxyListener
	pool     *pool.Pool
	baseDial func(context.Context) (net.Conn, error)
	userEnd  func(listener.SessionInfo)

	faults [2]atomic.Pointer[faultSet]
	dialf  atomic.Pointer[dialFaults]

	// stop is closed by Close: every fault wait and held dial ends.
	stop chan struct{}
	// served is closed when Serve has returned.
	served chan struct{}

	mu      sync.Mutex
	down    bool
	closed  bool
	nextID  uint64
	all     []*Session // every session, by ID-1
	live    map[*Session]struct{}
	ups     map[*upstreamConn]struct{} // open upstream conns
	counts  Counts
	changed chan struct{}  // closed and replaced when counts change
	cbs     sync.WaitGroup // running timer callbacks; Add under mu while !closed

	closeOnce sync.Once
	closeErr  error
}

// Counts are a Forwarder's event totals since New. Since they only grow,
// a wait for an event that already happened returns at once.
type Counts struct {
	// Accepted counts the connections that became sessions; Refused those
	// reset at once because the forwarder was down.
	Accepted, Refused int
	// Live counts sessions whose end the ProxyListener has not reported
	// yet; Ended those it has (Config.OnSessionEnd).
	Live, Ended int
	// Returned counts ended sessions whose upstream the pool kept for
	// another client (SessionInfo.Outcome.Kept()).
	Returned int
	// ClientFINs counts client FINs passed on to an upstream (CloseWrite
	// on an upstream conn).
	ClientFINs int
	// Dials counts upstream dials started (for spares too), and
	// DialFailures those that failed, including unreachable ones.
	Dials, DialFailures int
}

// Option configures New.
type Option func(*options)

type options struct {
	seed     uint64
	seeded   bool
	poolFns  []func(*pool.Config)
	lnFns    []func(*listener.Config)
	stopWait time.Duration
}

// WithSeed sets the seed of the random draws (probabilities, jitter,
// slice sizes). The default is a hash of the test's name, so a test
// replays its draws run after run; New logs the seed in use.
func WithSeed(seed uint64) Option {
	return func(o *options) { o.seed, o.seeded = seed, true }
}

// WithPool changes the pool's configuration before the pool is made. The
// defaults are the pool's own, except MaxIdle, which is
// pool.DefaultMaxIdle so that WithReuse alone reuses: no spares (so dial
// faults hit each session's own dial) and ReuseNever. If fn sets Dial,
// the forwarder's dial faults wrap it; Addr is the upstream given to New.
func WithPool(fn func(*pool.Config)) Option {
	return func(o *options) { o.poolFns = append(o.poolFns, fn) }
}

// WithReuse sets the pool's reuse policy (pool.Config.Reuse). With
// pool.ReuseIfVerified, also set pool.Config.Reset with WithPool, or New
// fails.
func WithReuse(p pool.Policy) Option {
	return WithPool(func(c *pool.Config) { c.Reuse = p })
}

// WithSpares sets how many fresh upstream conns the pool keeps dialed
// ahead (pool.Config.Spares). Spares are dialed under the dial faults in
// effect when they are dialed.
func WithSpares(n int) Option {
	return WithPool(func(c *pool.Config) { c.Spares = n })
}

// WithListener changes the ProxyListener's configuration. An
// OnSessionEnd set by fn is called after the forwarder's own.
func WithListener(fn func(*listener.Config)) Option {
	return func(o *options) { o.lnFns = append(o.lnFns, fn) }
}

// withStopWait sets how long Close waits for the sessions before it
// reports them as stuck (tests of that report).
func withStopWait(d time.Duration) Option {
	return func(o *options) { o.stopWait = d }
}

// StopWait is how long Close waits for sessions to end before it
// reports each one that would not, and then again after forcing their
// connections closed.
const StopWait = 10 * time.Second

// New starts a Forwarder on 127.0.0.1:0 in front of the TCP address
// upstream, through the real relay path (a pool.Pool and a
// listener.ProxyListener), with no fault set. It stops it with
// tb.Cleanup (see Close), reporting with tb.Errorf any session that
// would not end, and logs its address and seed with tb.Logf. It calls
// tb.Fatalf if the forwarder cannot start.
func New(tb TB, upstream string, opts ...Option) *Forwarder {
	tb.Helper()
	f, err := start(tb, upstream, opts)
	if err != nil {
		tb.Fatalf("listenertest: New: %v", err)
		return nil
	}
	tb.Cleanup(func() {
		if err := f.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	tb.Logf("listenertest: forwarding %s -> %s, seed %d (replay with listenertest.WithSeed(%d))", f.addr, upstream, f.seed, f.seed)
	return f
}

func start(tb TB, upstream string, opts []Option) (*Forwarder, error) {
	if upstream == "" {
		return nil, errors.New("empty upstream address")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !o.seeded {
		h := fnv.New64a()
		h.Write([]byte(tb.Name()))
		o.seed = h.Sum64()
	}
	f := &Forwarder{
		upstream: upstream,
		seed:     o.seed,
		stopWait: StopWait,
		stop:     make(chan struct{}),
		served:   make(chan struct{}),
		live:     make(map[*Session]struct{}),
		ups:      make(map[*upstreamConn]struct{}),
		changed:  make(chan struct{}),
	}
	if o.stopWait > 0 {
		f.stopWait = o.stopWait
	}
	for i := range f.faults {
		f.faults[i].Store(newFaultSet(nil))
	}
	f.dialf.Store(&dialFaults{changed: make(chan struct{})})

	pcfg := pool.Config{Network: "tcp", Addr: upstream, MaxIdle: pool.DefaultMaxIdle}
	for _, fn := range o.poolFns {
		fn(&pcfg)
	}
	f.baseDial = pcfg.Dial
	if f.baseDial == nil {
		network, addr := pcfg.Network, pcfg.Addr
		f.baseDial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	pcfg.Dial = f.dial
	p, err := pool.New(pcfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Close()
		return nil, err
	}
	var lcfg listener.Config
	for _, fn := range o.lnFns {
		fn(&lcfg)
	}
	f.userEnd = lcfg.OnSessionEnd
	lcfg.OnSessionEnd = f.sessionEnded
	pl, err := listener.New(&faultListener{Listener: ln, f: f}, p, lcfg)
	if err != nil {
		ln.Close()
		p.Close()
		return nil, err
	}
	f.pl, f.pool, f.addr = pl, p, ln.Addr().String()
	go f.serve()
	return f, nil
}

// serve runs the ProxyListener's Serve loop until Close.
func (f *Forwarder) serve() {
	defer close(f.served)
	f.pl.Serve()
}

// Addr returns the forwarder's address, host:port on 127.0.0.1: what
// the code under test should dial instead of the upstream.
func (f *Forwarder) Addr() string { return f.addr }

// Seed returns the seed of the random draws.
func (f *Forwarder) Seed() uint64 { return f.seed }

// Listener returns the ProxyListener, for its Stats, its Sessions and
// its Pool. Do not Close it: Close the Forwarder.
func (f *Forwarder) Listener() *listener.ProxyListener { return f.pl }

// Set puts faults in effect in dir (Upstream, Downstream or Both),
// replacing those set before in that direction; Set(dir) with no faults
// clears it. It applies to live sessions from their next chunk (a wait
// in progress for a Blackhole or a pause is re-evaluated at once) and to
// new ones, and never blocks. It panics on another Direction.
func (f *Forwarder) Set(dir Direction, faults ...Fault) {
	for _, i := range dir.indexes("Set") {
		old := f.faults[i].Swap(newFaultSet(faults))
		close(old.changed)
	}
}

// Faults returns the faults in effect in dir (Upstream or Downstream).
func (f *Forwarder) Faults(dir Direction) []Fault {
	idx := dir.indexes("Faults")
	if len(idx) != 1 {
		panic("listenertest: Faults: want Upstream or Downstream")
	}
	var out []Fault
	for _, sp := range f.faults[idx[0]].Load().specs {
		out = append(out, Fault{sp})
	}
	return out
}

// Down takes the forwarder down: live sessions are reset (see
// Session.Reset), and new connections are accepted and reset at once
// (counted in Counts.Refused). The upstream conns kept by the pool stay.
func (f *Forwarder) Down() {
	f.mu.Lock()
	f.down = true
	live := slices.Collect(maps.Keys(f.live))
	f.mu.Unlock()
	for _, s := range live {
		s.Reset()
	}
}

// Up brings the forwarder back after Down: new connections become
// sessions again.
func (f *Forwarder) Up() {
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
}

// admit makes a session of an accepted conn, or resets the conn if the
// forwarder is down or closed (and returns nil).
func (f *Forwarder) admit(c net.Conn) *Session {
	f.mu.Lock()
	if f.down || f.closed {
		if !f.closed {
			f.counts.Refused++
			f.notifyLocked()
		}
		f.mu.Unlock()
		resetConn(c)
		return nil
	}
	f.nextID++
	s := newSession(f, f.nextID, c)
	f.all = append(f.all, s)
	f.live[s] = struct{}{}
	f.counts.Accepted++
	f.notifyLocked()
	f.mu.Unlock()
	return s
}

// sessionEnded is the ProxyListener's OnSessionEnd.
func (f *Forwarder) sessionEnded(info listener.SessionInfo) {
	if a, ok := info.ClientAddr.(*clientAddr); ok {
		s := a.s
		s.stopTimers()
		s.mu.Lock()
		s.info = &info
		s.mu.Unlock()
		f.mu.Lock()
		if _, ok := f.live[s]; ok {
			delete(f.live, s)
			f.counts.Ended++
			if info.Outcome.Kept() {
				f.counts.Returned++
			}
			f.notifyLocked()
		}
		f.mu.Unlock()
		close(s.ended)
		s.release()
	}
	if f.userEnd != nil {
		f.userEnd(info)
	}
}

// Sessions returns the live sessions, oldest first.
func (f *Forwarder) Sessions() []*Session {
	f.mu.Lock()
	out := slices.Collect(maps.Keys(f.live))
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return cmp.Compare(a.id, b.id) })
	return out
}

// Session returns the session numbered id (live or ended), or nil if
// there is none yet.
func (f *Forwarder) Session(id uint64) *Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == 0 || id > uint64(len(f.all)) {
		return nil
	}
	return f.all[id-1]
}

// Counts returns the event totals.
func (f *Forwarder) Counts() Counts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.counts
	c.Live = len(f.live)
	return c
}

// note changes the counts.
func (f *Forwarder) note(change func(*Counts)) {
	f.mu.Lock()
	change(&f.counts)
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *Forwarder) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Wait waits until cond holds for the counts, or ctx ends (ctx's error,
// wrapped with the counts seen last), or the forwarder is closed
// (ErrClosed). cond runs with no lock held.
func (f *Forwarder) Wait(ctx context.Context, cond func(Counts) bool) error {
	for {
		f.mu.Lock()
		c := f.counts
		c.Live = len(f.live)
		ch, closed := f.changed, f.closed
		f.mu.Unlock()
		if cond(c) {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("listenertest: wait: %w (counts %+v)", ctx.Err(), c)
		}
	}
}

// WaitSessions waits until n sessions in total have been accepted since
// New (ended ones included; connections refused while down excluded).
func (f *Forwarder) WaitSessions(ctx context.Context, n int) error {
	return f.Wait(ctx, func(c Counts) bool { return c.Accepted >= n })
}

// WaitUpstreamReturned waits until n sessions in total have ended with
// their upstream kept by the pool for another client.
func (f *Forwarder) WaitUpstreamReturned(ctx context.Context, n int) error {
	return f.Wait(ctx, func(c Counts) bool { return c.Returned >= n })
}

// WaitClientFIN waits until n client FINs in total have been passed on to
// an upstream.
func (f *Forwarder) WaitClientFIN(ctx context.Context, n int) error {
	return f.Wait(ctx, func(c Counts) bool { return c.ClientFINs >= n })
}

// enter registers a timer callback; it reports false once the forwarder
// is closed.
func (f *Forwarder) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.cbs.Add(1)
	return true
}

func (f *Forwarder) leave() { f.cbs.Done() }

func (f *Forwarder) forgetUpstream(u *upstreamConn) {
	f.mu.Lock()
	delete(f.ups, u)
	f.mu.Unlock()
}

// Close stops the forwarder: every fault wait ends at once, the
// ProxyListener is closed (live sessions are cut) and the pool after it.
// If sessions are still running after StopWait, Close names each
// in its error, closes their connections and waits as long again. It
// returns once every goroutine of the forwarder has ended (or it gave
// up, which its error says). Close is called by New's cleanup; it is safe
// to call earlier, and more than once.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.close() })
	return f.closeErr
}

func (f *Forwarder) close() error {
	f.mu.Lock()
	f.closed = true
	close(f.stop)
	f.notifyLocked()
	f.mu.Unlock()

	var errs []error
	if !f.within(func() { f.pl.Close() }) {
		errs = append(errs, f.stuck())
		f.forceClose()
		if !f.within(func() { f.pl.Close() }) {
			errs = append(errs, fmt.Errorf("listenertest: Close: sessions still running %v after their connections were closed; giving up on them (their goroutines leak)", f.stopWait))
		}
	}
	if !f.within(func() { <-f.served }) {
		errs = append(errs, fmt.Errorf("listenertest: Close: Serve did not return within %v", f.stopWait))
	}
	if !f.within(func() { f.pool.Close() }) {
		errs = append(errs, fmt.Errorf("listenertest: Close: the pool did not close within %v", f.stopWait))
	}
	f.mu.Lock()
	all := slices.Clone(f.all)
	f.mu.Unlock()
	for _, s := range all {
		s.stopTimers()
	}
	f.cbs.Wait()
	return errors.Join(errs...)
}

// within runs fn on a goroutine and reports whether it returned within
// stopWait. Several calls may share one fn's completion: pl.Close is
// safe to call concurrently and more than once.
func (f *Forwarder) within(fn func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	t := time.NewTimer(f.stopWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// stuck describes the sessions that would not end.
func (f *Forwarder) stuck() error {
	var b strings.Builder
	fmt.Fprintf(&b, "listenertest: Close: sessions still running after %v (forwarder %s -> %s):", f.stopWait, f.addr, f.upstream)
	for _, s := range f.Sessions() {
		fmt.Fprintf(&b, "\n\t%v", s.State())
	}
	return errors.New(b.String())
}

// forceClose closes every client and upstream conn of the forwarder.
func (f *Forwarder) forceClose() {
	for _, s := range f.Sessions() {
		s.Reset()
	}
	f.mu.Lock()
	ups := slices.Collect(maps.Keys(f.ups))
	f.mu.Unlock()
	for _, u := range ups {
		u.Close()
	}
}
