package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Get after, or while waiting when, the pool is
// closed.
var ErrClosed = errors.New("pool: closed")

// Pool hands out upstream connections. It is safe for concurrent use.
// Close it to close its connections and stop its background goroutines.
type Pool struct {
	s settings

	base   context.Context // parent of every dial and Reset; ended by Close
	cancel context.CancelFunc
	kick   chan struct{}  // cap 1: spares may be short; wakes the keeper
	done   chan struct{}  // closed by Close: stops the keeper and the dial workers
	wg     sync.WaitGroup // the keeper and every dial worker; Add under mu while open
	// dialWork hands a dial to an idle dial worker (see runDialLocked).
	dialWork chan func()
	// spareDone reports each of the keeper's dials, nil on success, to
	// the keeper. Only the keeper starts spare dials (startSpareDial),
	// never more unreported than the channel's capacity, so a report
	// never blocks, even after the keeper returned.
	spareDone chan error
	closed    atomic.Bool // mirrors isClosed, for lock-free reads

	// refusedLogged is set once a Reset's ErrResetRefused was logged.
	refusedLogged atomic.Bool

	// upHint is set when a caller's dial succeeded, so the keeper can cut
	// its backoff short.
	upHint atomic.Bool

	// Hand-out and dial counters, kept outside mu for the hot path.
	gets              [SourceDial + 1]atomic.Uint64
	dials, dialErrors atomic.Uint64

	mu       sync.Mutex
	isClosed bool
	standby  bool      // SetStandby: no spares, nothing kept idle
	used     []*pconn  // idle used conns, most recently released last (LIFO)
	fresh    []*pconn  // spares, oldest first (FIFO)
	waiters  []*waiter // callers waiting for MaxOpen, oldest first
	open     int       // idle + in use + dialing + being closed: what MaxOpen caps
	inUse    int       // handed out, granted, or being checked
	dialing  int       // dials in flight, and slots granted to a waiter to dial
	// spareDials is the keeper's dials in flight, counted in dialing too.
	spareDials int
	counters   // under mu
}

// waiter is a caller waiting for a connection: in Pool.waiters for a
// MaxOpen slot, or alone for its own dial.
type waiter struct {
	ch      chan grant // cap 1: exactly one grant is ever sent
	start   time.Time  // when it was queued for MaxOpen
	granted bool       // under Pool.mu: the grant was sent
	gone    bool       // under Pool.mu: the caller gave up (own dial only)
}

// grant is what a waiter receives: a connection (counted in use), a slot
// to dial (counted in dialing), or an error.
type grant struct {
	c    *pconn
	slot bool
	err  error
}

// New validates cfg, naming the first bad field, and starts the pool's
// background goroutine, which keeps Config.Spares fresh connections dialed
// and sweeps idle ones past their age. New does not dial itself: a
// wrong address shows in the first Get and in the log.
func New(cfg Config) (*Pool, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		s:         s,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		dialWork:  make(chan func()),
		spareDone: make(chan error, s.spareDialLimit()),
	}
	p.base, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.keepSpares()
	return p, nil
}

// Policy returns the pool's reuse policy (Config.Reuse).
func (p *Pool) Policy() Policy { return p.s.reuse }

// Get returns a connection: the most recently used idle one that passes
// its checks, else a fresh spare, else a new dial. A connection that
// fails its checks (dead, stale, too old) is closed and the next one
// tried; the caller does not see it.
//
// With MaxOpen reached, callers wait in FIFO order. ctx bounds the wait,
// not the dial: a dial runs under DialTimeout, and a conn that arrives
// after its caller gave up is kept as a spare (or given to the next
// waiter). When ctx ends first, Get returns ctx.Err(). Get returns
// ErrClosed once the pool is closed, and a dial error wrapped with the
// prefix "pool: dial:" when the dial fails.
func (p *Pool) Get(ctx context.Context) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	for {
		// Decide under the lock; act after it.
		var (
			dial *waiter // our own dial, started
			wait *waiter // queued for MaxOpen
			err  error
		)
		p.mu.Lock()
		c := p.takeIdleLocked() // nil once closed: Close empties the lists
		switch {
		case c != nil:
		case p.isClosed:
			err = ErrClosed
		case p.s.maxOpen == 0 || p.open < p.s.maxOpen:
			p.open++
			p.dialing++
			dial = p.startDialLocked()
		default:
			wait = p.enqueueLocked()
		}
		p.mu.Unlock()

		switch {
		case err != nil:
			return Lease{}, err
		case c != nil:
			if p.vet(c) {
				return p.handOut(c, c.source()), nil
			}
			// It failed its checks and was closed: decide again.
		case dial != nil:
			return p.awaitDial(ctx, dial)
		default:
			return p.awaitGrant(ctx, wait)
		}
	}
}

// vet waits out c's Settle time and checks it for hand-out; a conn that
// fails is closed and counted. c is counted in use; the caller owns it.
func (p *Pool) vet(c *pconn) bool {
	waitReady(c)
	if out := p.checkOut(c); out != OutcomeNone {
		p.retire(c, out, true)
		return false
	}
	return true
}

// takeIdleLocked takes the most recently used idle conn, else the oldest
// spare, and counts it in use. It returns nil when both lists are empty.
//
// A used conn still in its Reset's Settle time (readyAt) is passed over
// for one that is past it, or for a spare; taken only when nothing else
// is idle, and then the caller waits for its readyAt (waitReady).
func (p *Pool) takeIdleLocked() *pconn {
	i := -1
	switch {
	case len(p.used) > 0 && p.used[len(p.used)-1].readyAt.IsZero():
		i = len(p.used) - 1
	case len(p.used) > 0:
		i = p.readyUsedLocked()
	}
	if i < 0 && len(p.fresh) > 0 {
		c := p.fresh[0]
		p.fresh = slices.Delete(p.fresh, 0, 1)
		p.inUse++
		p.kickLocked()
		return c
	}
	if i < 0 && len(p.used) > 0 {
		// Only conns in their quiet period: the one whose ends first.
		i = 0
		for j, u := range p.used {
			if u.readyAt.Before(p.used[i].readyAt) {
				i = j
			}
		}
	}
	if i < 0 {
		return nil
	}
	c := p.used[i]
	p.used = slices.Delete(p.used, i, i+1)
	p.inUse++
	return c
}

// readyUsedLocked returns the index of the most recently released used
// conn that is past its quiet period, or -1.
func (p *Pool) readyUsedLocked() int {
	now := time.Now()
	for i := len(p.used) - 1; i >= 0; i-- {
		if r := p.used[i].readyAt; r.IsZero() || !r.After(now) {
			return i
		}
	}
	return -1
}

// waitReady waits until c's Settle time (readyAt) is over, and clears
// it. The caller owns c; checkOut's peek follows.
func waitReady(c *pconn) {
	if c.readyAt.IsZero() {
		return
	}
	if d := time.Until(c.readyAt); d > 0 {
		time.Sleep(d)
	}
	c.readyAt = time.Time{}
}

// handOut starts a new generation of c and returns its lease.
func (p *Pool) handOut(c *pconn, src Source) Lease {
	p.gets[src].Add(1)
	return Lease{c: c, gen: c.gen.Add(1), src: src}
}

// enqueueLocked queues the caller for MaxOpen. It is called with p.mu
// held.
func (p *Pool) enqueueLocked() *waiter {
	w := &waiter{ch: make(chan grant, 1), start: time.Now()}
	p.waiters = append(p.waiters, w)
	p.waitCount++
	return w
}

// awaitGrant waits for w's grant or ctx.
func (p *Pool) awaitGrant(ctx context.Context, w *waiter) (Lease, error) {
	select {
	case g := <-w.ch:
		p.noteWait(w.start)
		switch {
		case g.err != nil:
			return Lease{}, g.err
		case g.slot:
			var dial *waiter
			p.mu.Lock()
			if p.isClosed {
				p.dialing--
				p.freeSlotLocked()
			} else {
				dial = p.startDialLocked()
			}
			p.mu.Unlock()
			if dial == nil {
				return Lease{}, ErrClosed
			}
			return p.awaitDial(ctx, dial)
		}
		if !g.c.readyAt.IsZero() && !p.vet(g.c) {
			// Released in its Settle time, then failed its checks:
			// start over.
			return p.Get(ctx)
		}
		return p.handOut(g.c, g.c.source()), nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	granted := w.granted
	if !granted { // still queued: leave the queue
		i := slices.Index(p.waiters, w)
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
	p.mu.Unlock()
	if granted {
		// A grant raced with ctx: pass it on.
		p.giveBack(<-w.ch)
	}
	p.noteWait(w.start)
	return Lease{}, ctx.Err()
}

func (p *Pool) noteWait(start time.Time) {
	d := time.Since(start)
	p.mu.Lock()
	p.waitTime += d
	p.mu.Unlock()
}

// popWaiterLocked removes and returns the oldest waiter, or nil.
func (p *Pool) popWaiterLocked() *waiter {
	if len(p.waiters) == 0 {
		return nil
	}
	w := p.waiters[0]
	p.waiters = slices.Delete(p.waiters, 0, 1)
	return w
}

func (w *waiter) grantLocked(g grant) {
	w.granted = true
	w.ch <- g // never blocks: cap 1, one grant per waiter
}

// giveBack returns a grant its caller no longer wants.
func (p *Pool) giveBack(g grant) {
	switch {
	case g.c != nil:
		p.place(g.c, true)
	case g.slot:
		p.mu.Lock()
		p.dialing--
		p.freeSlotLocked()
		p.mu.Unlock()
	}
}

// startDialLocked starts a dial for the caller on a dial worker, under
// DialTimeout, into the slot the caller reserved (open and dialing
// counted). It is called with p.mu held while the pool is open.
func (p *Pool) startDialLocked() *waiter {
	w := &waiter{ch: make(chan grant, 1)}
	p.runDialLocked(func() { p.dialInto(w) })
	return w
}

// awaitDial waits for the dial w stands for, or ctx, or Close. A conn
// that arrives after the caller gave up is kept or passed on (dialInto).
func (p *Pool) awaitDial(ctx context.Context, w *waiter) (Lease, error) {
	var err error
	select {
	case g := <-w.ch:
		if g.err != nil {
			return Lease{}, g.err
		}
		return p.handOut(g.c, SourceDial), nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-p.done: // Close: do not wait for a dial that ignores its ctx
		err = ErrClosed
	}
	p.mu.Lock()
	granted := w.granted
	if !granted {
		w.gone = true // dialInto keeps the conn, or closes it
	}
	p.mu.Unlock()
	if granted {
		p.giveBack(<-w.ch)
	}
	return Lease{}, err
}

// dialInto dials one connection into the slot its caller reserved and
// grants it to w, or, when w's caller is gone, keeps it as a spare or
// hands it to the next waiter.
func (p *Pool) dialInto(w *waiter) {
	c, err := p.dial()
	p.mu.Lock()
	p.dialing--
	if err != nil {
		p.freeSlotLocked()
		if !w.gone {
			if p.isClosed {
				err = ErrClosed
			}
			w.grantLocked(grant{err: err})
		}
		p.mu.Unlock()
		return
	}
	p.upHint.Store(true)
	p.kickLocked()
	if p.isClosed {
		if !w.gone {
			w.grantLocked(grant{err: ErrClosed})
		}
		p.mu.Unlock()
		p.retire(c, ClosedPoolClosed, false)
		return
	}
	out := KeptFresh // granted to w
	if w.gone {
		out = p.placeLocked(c)
	} else {
		p.inUse++
		w.grantLocked(grant{c: c})
	}
	p.mu.Unlock()
	if !out.Kept() {
		p.retire(c, out, false)
	}
}

// dialWorkerIdle is how long a dial worker waits for its next dial
// before it exits.
const dialWorkerIdle = time.Second

// runDialLocked runs dial on an idle dial worker, or on a new one. It is
// called with p.mu held while the pool is open, so that Close cannot be
// waiting for p.wg yet. Workers outlive their dials, so that a dial does
// not grow a new goroutine's stack each time (see the ledger in
// bench/README.md).
func (p *Pool) runDialLocked(dial func()) {
	select {
	case p.dialWork <- dial:
	default:
		p.wg.Add(1)
		go p.dialWorker(dial)
	}
}

// dialWorker runs dial, then the dials runDialLocked hands it, until it
// has been idle for dialWorkerIdle or the pool is closed. A dial it has
// taken always runs: the dial itself handles a closed pool.
func (p *Pool) dialWorker(dial func()) {
	defer p.wg.Done()
	idle := time.NewTimer(dialWorkerIdle)
	defer idle.Stop()
	for {
		dial()
		idle.Reset(dialWorkerIdle)
		select {
		case dial = <-p.dialWork:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}

// dial opens one connection under DialTimeout and the pool's lifetime.
func (p *Pool) dial() (*pconn, error) {
	ctx, cancel := context.WithTimeout(p.base, p.s.dialTimeout)
	conn, err := p.s.dial(ctx)
	cancel()
	p.dials.Add(1)
	if err == nil && conn == nil {
		err = errors.New("Config.Dial returned neither a conn nor an error")
	}
	if err == nil {
		// A dialer may leave deadlines behind; a pooled conn has none.
		if err = conn.SetDeadline(time.Time{}); err != nil {
			conn.Close()
			err = fmt.Errorf("clearing deadlines: %w", err)
		}
	}
	if p.s.onDial != nil {
		p.s.onDial(err)
	}
	if err != nil {
		p.dialErrors.Add(1)
		return nil, fmt.Errorf("pool: dial: %w", err)
	}
	return newPconn(p, conn, time.Now()), nil
}

// place puts c back into the pool (placeLocked), or closes it when there
// is no room or the pool is closed, and reports which. inUse says
// whether c is still counted in use.
func (p *Pool) place(c *pconn, inUse bool) Outcome {
	p.mu.Lock()
	if inUse {
		p.inUse--
	}
	out := p.placeLocked(c)
	p.mu.Unlock()
	if !out.Kept() {
		p.retire(c, out, false)
	}
	return out
}

// placeLocked puts a conn that is not counted in use back into the pool:
// to the oldest waiter, else on its idle list. It returns KeptUsed or
// KeptFresh, or the reason to close it (ClosedFull, ClosedPoolClosed),
// which the caller does with retire after unlocking.
func (p *Pool) placeLocked(c *pconn) Outcome {
	kept := KeptFresh
	if c.used {
		kept = KeptUsed
	}
	if p.isClosed {
		return ClosedPoolClosed
	}
	if w := p.popWaiterLocked(); w != nil {
		p.inUse++
		w.grantLocked(grant{c: c})
		return kept
	}
	if p.standby {
		return ClosedStandby
	}
	if c.used {
		if len(p.used) >= p.s.maxIdle {
			return ClosedFull
		}
		p.used = append(p.used, c)
		return kept
	}
	if len(p.fresh) >= p.s.freshCap() {
		return ClosedFull
	}
	p.fresh = append(p.fresh, c)
	return kept
}

// retire closes c and counts why, then frees its slot. inUse says
// whether c is still counted in use. The conn is closed before its slot
// is freed, so the number of open sockets never exceeds MaxOpen.
func (p *Pool) retire(c *pconn, why Outcome, inUse bool) {
	c.conn.Close()
	p.mu.Lock()
	if inUse {
		p.inUse--
	}
	p.closes[why]++
	p.freeSlotLocked()
	p.mu.Unlock()
}

// freeSlotLocked gives up one MaxOpen slot: to the oldest waiter, which
// then dials in it, or back to the pool.
func (p *Pool) freeSlotLocked() {
	if !p.isClosed {
		if w := p.popWaiterLocked(); w != nil {
			p.dialing++
			w.grantLocked(grant{slot: true})
			return
		}
	}
	p.open--
	p.kickLocked()
}

// SetStandby puts the pool in standby (on true) or takes it out (on
// false). In standby it dials no spares and keeps nothing idle: its idle
// connections are closed now, and each one released or dialed later is
// closed (ClosedStandby) unless a waiter takes it. Get still works,
// dialing as needed. A set of pools puts an unhealthy server's pool in
// standby, so that no connection to it waits for a client. Taking the
// pool out of standby refills its spares.
func (p *Pool) SetStandby(on bool) {
	var idle []*pconn
	p.mu.Lock()
	if p.isClosed || p.standby == on {
		p.mu.Unlock()
		return
	}
	p.standby = on
	if on {
		idle = append(p.used, p.fresh...)
		p.used, p.fresh = nil, nil
	} else {
		p.kickLocked()
	}
	p.mu.Unlock()
	for _, c := range idle {
		p.retire(c, ClosedStandby, false)
	}
}

// kickLocked wakes the keeper when spares are short. It never blocks.
func (p *Pool) kickLocked() {
	if !p.standby && len(p.fresh) < p.s.spares {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Close closes idle connections now and in-use ones at their release
// (ClosedPoolClosed), fails waiters with ErrClosed, cancels dials and
// Resets in flight, and returns after the background goroutine and every
// dial worker have ended. Get returns ErrClosed afterwards. Safe to
// call twice; it always returns nil.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.isClosed = true
	p.closed.Store(true)
	idle := append(p.used, p.fresh...)
	p.used, p.fresh = nil, nil
	for _, w := range p.waiters {
		w.grantLocked(grant{err: ErrClosed})
	}
	p.waiters = nil
	p.mu.Unlock()

	p.cancel()
	close(p.done)
	for _, c := range idle {
		p.retire(c, ClosedPoolClosed, false)
	}
	p.wg.Wait()
	return nil
}
