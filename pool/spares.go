package pool

import (
	"math/rand/v2"
	"time"
)

// Backoff bounds for refilling spares against an upstream that fails.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
)

// doomed is an idle conn the sweep took out, and why.
type doomed struct {
	c   *pconn
	why Outcome
}

// maxSpareDials bounds the keeper's dials in flight while the upstream
// answers; below it, every missing spare is dialed at once (see the
// ledger in bench/README.md).
const maxSpareDials = 64

// spareDialLimit is how many spare dials the keeper keeps in flight
// while the upstream answers.
func (s *settings) spareDialLimit() int { return max(1, min(s.spares, maxSpareDials)) }

// keepSpares is the pool's one lasting background goroutine. It keeps
// Config.Spares fresh connections dialed, all that are missing at once
// (up to maxSpareDials) on dial workers, and sweeps idle conns past
// IdleTimeout or MaxLifetime (or found dead or stale by a peek) every
// sweepEvery. Against a failing upstream it dials one at a time, backs
// off exponentially with jitter and logs once when the upstream goes down
// and once when it recovers. It returns when Close closes p.done.
func (p *Pool) keepSpares() {
	defer p.wg.Done()
	sweep := time.NewTicker(p.s.sweepEvery())
	defer sweep.Stop()
	var (
		failures  int // failed dials since the last success: down while > 0
		backoffs  int // backoffs since the last success (for the delay)
		downSince time.Time
		buf       []doomed
		inFlight  int
	)
	for {
		limit := p.s.spareDialLimit()
		if failures > 0 {
			limit = 1 // probe a failing upstream with one dial
		}
		for inFlight < limit && p.startSpareDial() {
			inFlight++
		}
		select {
		case <-p.done:
			return
		case err := <-p.spareDone:
			inFlight--
			if err == nil {
				if failures > 0 {
					p.s.log.Info("pool: upstream recovered",
						"down_for", time.Since(downSince).Round(time.Millisecond),
						"failed_dials", failures)
					failures, backoffs = 0, 0
				}
				continue
			}
			if p.closed.Load() {
				return
			}
			if failures++; failures == 1 {
				downSince = time.Now()
				p.s.log.Warn("pool: upstream down", "err", err)
			}
			if inFlight > 0 {
				continue // dials started with this one: back off once, after the last
			}
			backoffs++
			if !p.backOff(backoffs, sweep.C, &buf) {
				return
			}
		case <-p.kick:
		case <-sweep.C:
			buf = p.sweep(buf)
		}
	}
}

// startSpareDial starts a spare dial on a dial worker when spares (with
// those being dialed) are short and MaxOpen allows one more conn.
func (p *Pool) startSpareDial() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed || p.standby || len(p.fresh)+p.spareDials >= p.s.spares || (p.s.maxOpen > 0 && p.open >= p.s.maxOpen) {
		return false
	}
	p.open++
	p.dialing++
	p.spareDials++
	// Only a caller's success after this dial started may cut the
	// keeper's backoff short, should this dial fail.
	p.upHint.Store(false)
	p.runDialLocked(p.dialSpare)
	return true
}

// dialSpare dials one spare into the slot startSpareDial reserved, places
// it (to the oldest waiter, else on the spare list) and reports to the
// keeper.
func (p *Pool) dialSpare() {
	c, err := p.dial()
	p.mu.Lock()
	p.dialing--
	p.spareDials--
	out := OutcomeNone
	if err != nil {
		p.freeSlotLocked()
	} else {
		// Placed under the same lock that stops counting the dial, so
		// that the keeper never sees a spare missing that is neither.
		out = p.placeLocked(c)
	}
	p.mu.Unlock()
	if err == nil && !out.Kept() {
		p.retire(c, out, false)
	}
	p.spareDone <- err
}

// backOff waits after the failures-th failed dial in a row, sweeping
// meanwhile. A caller's successful dial cuts it short. It returns false
// when the pool is closed.
func (p *Pool) backOff(failures int, sweep <-chan time.Time, buf *[]doomed) bool {
	t := time.NewTimer(backoffDelay(failures))
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return false
		case <-t.C:
			return true
		case <-p.kick:
			if p.upHint.Swap(false) {
				return true
			}
		case <-sweep:
			*buf = p.sweep(*buf)
		}
	}
}

// backoffDelay is the wait after the failures-th failure in a row:
// backoffMin doubling up to backoffMax, with "equal jitter" (uniform in
// the upper half) so that many pools do not dial in step.
func backoffDelay(failures int) time.Duration {
	d := backoffMax
	if shift := failures - 1; shift < 16 {
		d = min(backoffMin<<max(shift, 0), backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// sweep closes idle conns past their age, dead, or (used ones) stale.
// The peeks run under p.mu: they never block, and no one else reads an
// idle conn. buf is reused between sweeps.
func (p *Pool) sweep(buf []doomed) []doomed {
	now := time.Now()
	buf = buf[:0]
	p.mu.Lock()
	p.used, buf = p.sweepLocked(p.used, now, buf)
	p.fresh, buf = p.sweepLocked(p.fresh, now, buf)
	p.mu.Unlock()
	for i, d := range buf {
		p.retire(d.c, d.why, false)
		buf[i] = doomed{}
	}
	return buf
}

func (p *Pool) sweepLocked(list []*pconn, now time.Time, buf []doomed) ([]*pconn, []doomed) {
	kept := list[:0]
	for _, c := range list {
		why := p.aged(c, now)
		if why == OutcomeNone {
			// The socket only: peekUsed's read of a wrapper would be
			// wasted work under the lock, and hand-out does it anyway.
			switch r := c.peek(); {
			case r == peekDead:
				why = ClosedDead
			case r == peekData && c.used:
				why = ClosedStale
			}
		}
		if why != OutcomeNone {
			buf = append(buf, doomed{c, why})
			continue
		}
		kept = append(kept, c)
	}
	clear(list[len(kept):])
	return kept, buf
}
