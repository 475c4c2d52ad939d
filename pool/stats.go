package pool

import "time"

// Stats is a snapshot of a pool's gauges and counters. Counters only grow.
type Stats struct {
	// Open counts what MaxOpen caps: idle, in use (including conns being
	// checked or closed), and dials in flight.
	Open int
	// IdleFresh and IdleUsed count idle spares and idle used conns.
	IdleFresh, IdleUsed int
	// InUse counts conns handed out (or being checked for a hand-out).
	InUse int
	// Waiting counts callers waiting for MaxOpen.
	Waiting int
	// Dialing counts dials in flight (including slots granted to a waiter
	// that is about to dial).
	Dialing int

	// Dials counts dial attempts; DialErrors those that failed.
	Dials, DialErrors uint64
	// Hand-outs by source.
	GetReused, GetSpare, GetDial uint64
	// Waits: how many Gets waited for MaxOpen, and for how long in total.
	WaitCount    uint64
	WaitDuration time.Duration
	// Closed counts closed connections by Outcome (index by Outcome value;
	// the Kept* and OutcomeNone entries stay zero). ClosedDead,
	// ClosedStale, ClosedNotClean, ClosedLifetime and ClosedIdle also
	// count checks at hand-out and by the background sweep.
	Closed [ClosedPoolClosed + 1]uint64
}

// counters are the Stats kept under Pool.mu.
type counters struct {
	closes    [ClosedPoolClosed + 1]uint64
	waitCount uint64
	waitTime  time.Duration
}

// Stats returns a snapshot of the pool's counters. It is cheap: one short
// critical section. Safe to call after Close.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := Stats{
		Open:         p.open,
		IdleFresh:    len(p.fresh),
		IdleUsed:     len(p.used),
		InUse:        p.inUse,
		Waiting:      len(p.waiters),
		Dialing:      p.dialing,
		WaitCount:    p.waitCount,
		WaitDuration: p.waitTime,
		Closed:       p.closes,
	}
	p.mu.Unlock()
	s.Dials = p.dials.Load()
	s.DialErrors = p.dialErrors.Load()
	s.GetReused = p.gets[SourceReused].Load()
	s.GetSpare = p.gets[SourceSpare].Load()
	s.GetDial = p.gets[SourceDial].Load()
	return s
}

// Add adds o's gauges and counters to s: the figures of several pools
// as one.
func (s *Stats) Add(o Stats) {
	s.Open += o.Open
	s.IdleFresh += o.IdleFresh
	s.IdleUsed += o.IdleUsed
	s.InUse += o.InUse
	s.Waiting += o.Waiting
	s.Dialing += o.Dialing
	s.Dials += o.Dials
	s.DialErrors += o.DialErrors
	s.GetReused += o.GetReused
	s.GetSpare += o.GetSpare
	s.GetDial += o.GetDial
	s.WaitCount += o.WaitCount
	s.WaitDuration += o.WaitDuration
	for i := range s.Closed {
		s.Closed[i] += o.Closed[i]
	}
}
