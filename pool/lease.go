package pool

import (
	"net"
	"strconv"
	"time"
)

// Source says where a handed-out connection came from.
type Source uint8

const (
	// SourceReused: an idle connection that served a client before.
	SourceReused Source = iota + 1
	// SourceSpare: a fresh connection dialed ahead (or given back untouched).
	SourceSpare
	// SourceDial: dialed for this caller.
	SourceDial
)

// String returns "reused", "spare" or "dial" ("none" for the zero value).
func (s Source) String() string {
	switch s {
	case 0:
		return "none"
	case SourceReused:
		return "reused"
	case SourceSpare:
		return "spare"
	case SourceDial:
		return "dial"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

// Verdict is what the caller learned about the connection during its
// session. The pool decides with it, never on its own guesswork alone.
type Verdict struct {
	// Used reports that any byte was read from either side (the client or
	// the upstream), whether or not it was delivered. A lease given back
	// with Used false must not have had a single byte written to or read
	// from its connection.
	Used bool
	// Clean reports that the session left the upstream in a reusable state
	// (splice.Result.UpstreamClean): no error other than our own
	// interrupt, no EOF from the upstream, and the last bytes moved toward
	// the client.
	Clean bool
	// UpstreamFailed reports that the upstream ended the session with an
	// error (a reset) before it sent a single byte: a health signal for
	// Config.OnRelease (a set of pools counts it against the server). The
	// pool itself needs no more than Clean, which such a session never is.
	UpstreamFailed bool
}

// Outcome says what Release did with a connection. The Closed* values
// also index Stats.Closed.
type Outcome uint8

const (
	// OutcomeNone: the lease was already released (or is the zero Lease);
	// nothing happened.
	OutcomeNone Outcome = iota
	// KeptUsed: kept as an idle used connection.
	KeptUsed
	// KeptFresh: never used, kept back as a spare.
	KeptFresh
	// ClosedNotClean: the verdict was not clean, the policy is ReuseNever,
	// or the pool cannot peek the connection (not a socket, or a platform
	// without a peek), so a used connection cannot be vetted.
	ClosedNotClean
	// ClosedDead: EOF or an error was pending.
	ClosedDead
	// ClosedStale: unread bytes were pending on a used connection.
	ClosedStale
	// ClosedLifetime: past MaxLifetime.
	ClosedLifetime
	// ClosedIdle: idle past IdleTimeout.
	ClosedIdle
	// ClosedResetFailed: Config.Reset failed or timed out.
	ClosedResetFailed
	// ClosedFull: MaxIdle reached.
	ClosedFull
	// ClosedStandby: the pool was in standby (SetStandby), which keeps
	// nothing idle.
	ClosedStandby
	// ClosedPoolClosed: the pool was closed.
	ClosedPoolClosed
)

var outcomeNames = [...]string{
	OutcomeNone:       "none",
	KeptUsed:          "kept-used",
	KeptFresh:         "kept-fresh",
	ClosedNotClean:    "closed-not-clean",
	ClosedDead:        "closed-dead",
	ClosedStale:       "closed-stale",
	ClosedLifetime:    "closed-lifetime",
	ClosedIdle:        "closed-idle",
	ClosedResetFailed: "closed-reset-failed",
	ClosedFull:        "closed-full",
	ClosedStandby:     "closed-standby",
	ClosedPoolClosed:  "closed-pool-closed",
}

// String returns a short kebab-case name ("kept-used", "closed-stale"),
// fit for a metric label.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Kept reports whether the connection went back into the pool.
func (o Outcome) Kept() bool { return o == KeptUsed || o == KeptFresh }

// Lease is one hand-out of a connection. It is a small value: copying it
// is cheap, and Get allocates nothing for it.
//
// Release it exactly once. A second Release, or one on a copy, is a no-op
// returning OutcomeNone, even after the connection was handed to someone
// else: each hand-out has a generation, and only the lease holding the
// current one can release it. The zero Lease is released already.
type Lease struct {
	c   *pconn
	gen uint64
	src Source
}

// Conn returns the connection, exactly as Config.Dial returned it (no
// wrapper, so splice(2), ReadFrom and CloseWrite stay available). Its
// deadlines are clear. It is valid until Release; after that (or on the
// zero Lease) Conn returns nil, so a stale copy cannot reach the next
// client's connection. The caller must not close it: Release does.
func (l Lease) Conn() net.Conn {
	if l.c == nil || l.c.gen.Load() != l.gen {
		return nil
	}
	return l.c.conn
}

// Source says where the connection came from.
func (l Lease) Source() Source { return l.src }

// Release gives the connection back with the session's verdict and
// reports what the pool did with it. It is synchronous: for a used
// connection it may wait QuietPeriod and run Config.Reset (bounded by
// ResetTimeout) before it returns. The caller must have stopped using the
// connection (every read and write returned) and must not use it
// afterwards. Safe for concurrent use; only the first Release of a
// hand-out acts.
func (l Lease) Release(v Verdict) Outcome {
	if l.c == nil || !l.c.gen.CompareAndSwap(l.gen, l.gen+1) {
		return OutcomeNone
	}
	p := l.c.p
	out := p.release(l.c, v)
	if p.s.onRelease != nil {
		p.s.onRelease(v)
	}
	return out
}

// release decides on a connection whose lease was just released, then
// keeps or closes it. c counts as in use until it is placed or retired.
func (p *Pool) release(c *pconn, v Verdict) Outcome {
	if out := p.judge(c, v); out != OutcomeNone {
		p.retire(c, out, true)
		return out
	}
	return p.place(c, true)
}

// judge runs Release's checks on c in order, without holding the lock,
// and returns the first reason to close it, or OutcomeNone when it may
// be kept (MaxIdle and Close are decided by placeLocked):
//
//  1. the pool is open;
//  2. the policy and the verdict allow keeping it;
//  3. it is not past MaxLifetime, nor, untouched, past IdleTimeout (aged);
//  4. its deadlines clear;
//  5. given back untouched and never used: not dead (vetPeek), as at
//     hand-out; else, used: neutral (vetReleased).
func (p *Pool) judge(c *pconn, v Verdict) Outcome {
	// Untouched: nothing was written or read, so the conn is as it was
	// when handed out. A fresh one goes back as a spare (a greeting still
	// pending is its first client's, as at hand-out); a used one is vetted
	// like any used conn.
	untouchedFresh := !v.Used && !c.used
	switch {
	case p.closed.Load():
		return ClosedPoolClosed
	case !untouchedFresh && (p.s.reuse == ReuseNever || (v.Used && !v.Clean)):
		return ClosedNotClean // the policy or the verdict forbids keeping it
	}
	if p.s.maxLifetime > 0 || p.s.idleTimeout > 0 {
		// An untouched conn has been idle, as the upstream sees it, since
		// its last traffic, not since this hand-out: keep its idleSince.
		// A used one just had traffic: only its lifetime counts.
		if out := p.aged(c, time.Now()); out == ClosedLifetime || (out == ClosedIdle && !v.Used) {
			return out
		}
	}
	switch {
	case c.conn.SetDeadline(time.Time{}) != nil:
		return ClosedDead
	case untouchedFresh:
		return vetPeek(c)
	}
	return p.vetReleased(c, v)
}

// vetReleased makes sure a used conn is neutral before it is kept: a
// quiet period then a peek, and the Reset with a peek after it (or its
// Settle time, which leaves that peek to the hand-out). It marks c used.
func (p *Pool) vetReleased(c *pconn, v Verdict) Outcome {
	// Do not pay for the quiet period and Reset when the conn would be
	// closed as surplus anyway.
	if (p.s.quiet > 0 || p.s.reset.Func != nil) && p.full() {
		return ClosedFull
	}
	// The quiet period lets a late byte arrive before the peek. A Reset
	// that drains reads such a byte anyway.
	if p.s.quiet > 0 && !p.s.reset.Drains {
		time.Sleep(p.s.quiet)
	}
	if out := vetUsed(c.peekUsed()); out != OutcomeNone {
		return out
	}
	if p.s.reset.Func != nil {
		if err := p.runReset(c); err != nil {
			return ClosedResetFailed
		}
		if p.s.reset.Settle > 0 {
			// No client gets the conn before the Settle time has passed,
			// and the hand-out peek then sees every byte a peek now
			// would (see readyAt).
			c.readyAt = time.Now().Add(p.s.reset.Settle)
		} else if out := vetUsed(c.peekUsed()); out != OutcomeNone {
			return out
		}
	}
	c.used = true
	if p.s.idleTimeout > 0 && (v.Used || p.s.reset.Func != nil) {
		c.idleSince = time.Now() // traffic just moved
	}
	return OutcomeNone
}

// full reports whether a used conn released now would find no waiter
// and no room.
func (p *Pool) full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters) == 0 && len(p.used) >= p.s.maxIdle
}
