package pool

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// pconn is one upstream connection and what the pool knows about it.
//
// Ownership: a pconn is in exactly one place at a time: a list under
// Pool.mu (used or fresh), a lease (in use), a check, or on its way to
// retire. Its plain fields are written only by its current owner, and
// ownership passes under Pool.mu, which orders those writes.
type pconn struct {
	p    *Pool
	conn net.Conn
	// gen counts hand-outs and releases: a hand-out moves it from even to
	// odd and gives the lease that value; the lease's Release moves it on
	// with a compare-and-swap, so only the first Release of the current
	// hand-out succeeds.
	gen       atomic.Uint64
	created   time.Time
	idleSince time.Time
	used      bool // served a client before: unread bytes now mean stale
	// readyAt, when set, is when a Reset's Settle time ends: the conn is
	// not handed out before, and the hand-out peek then sees any byte
	// that followed the echo. Hand-out clears it.
	readyAt time.Time
	// wrapped: conn is not the socket itself (a *tls.Conn, say), so it
	// may hold read-ahead bytes that a peek of the socket cannot see.
	wrapped bool
	peeker
}

func newPconn(p *Pool, conn net.Conn, now time.Time) *pconn {
	c := &pconn{p: p, conn: conn, created: now, idleSince: now}
	sock := socketOf(conn)
	c.wrapped = sock != conn
	c.peeker.init(sock)
	return c
}

// peekUsed is peek for a used conn. When the socket is quiet and the
// conn wraps it, a read with an expired deadline also looks into the
// wrapper's own buffer (a *tls.Conn returns buffered plaintext, or
// decrypts a buffered record, before it touches the socket). It may
// consume bytes, which only matters when it finds some, and then the
// conn is closed. Used conns only: on a fresh conn it would eat the
// greeting.
func (c *pconn) peekUsed() peekResult {
	r := c.peek()
	if r != peekEmpty || !c.wrapped {
		return r
	}
	if c.conn.SetReadDeadline(time.Unix(1, 0)) != nil {
		return peekDead
	}
	var b [1]byte
	n, err := c.conn.Read(b[:])
	if c.conn.SetReadDeadline(time.Time{}) != nil {
		return peekDead
	}
	switch {
	case n > 0:
		return peekData
	case errors.Is(err, os.ErrDeadlineExceeded):
		return peekEmpty
	}
	return peekDead
}

// source is where a conn handed over from the pool (not dialed for the
// caller) came from.
func (c *pconn) source() Source {
	if c.used {
		return SourceReused
	}
	return SourceSpare
}

// peekResult is what a non-blocking peek found on a connection.
type peekResult uint8

const (
	peekEmpty   peekResult = iota // nothing pending: alive and quiet
	peekData                      // unread bytes pending
	peekDead                      // EOF or an error pending
	peekUnknown                   // this conn or platform cannot be peeked
)

// socketOf returns the conn to peek: c itself when it is a syscall.Conn,
// else what its NetConn method returns (as *tls.Conn and most transparent
// wrappers have), repeatedly.
func socketOf(c net.Conn) net.Conn {
	for range 8 {
		if _, ok := c.(syscall.Conn); ok {
			return c
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		next := u.NetConn()
		if next == nil {
			return c
		}
		c = next
	}
	return c
}

// vetUsed turns a peek on a used conn into a reason to close it, or
// OutcomeNone. A conn that cannot be peeked is not vetted, so not kept.
func vetUsed(r peekResult) Outcome {
	switch r {
	case peekData:
		return ClosedStale
	case peekDead:
		return ClosedDead
	case peekUnknown:
		return ClosedNotClean
	}
	return OutcomeNone
}

// aged reports whether c is past MaxLifetime or IdleTimeout at now.
func (p *Pool) aged(c *pconn, now time.Time) Outcome {
	if p.s.maxLifetime > 0 && now.Sub(c.created) >= p.s.maxLifetime {
		return ClosedLifetime
	}
	if p.s.idleTimeout > 0 && now.Sub(c.idleSince) >= p.s.idleTimeout {
		return ClosedIdle
	}
	return OutcomeNone
}

// vetPeek peeks an idle conn. Unread bytes on a used conn mean stale; on
// a fresh conn they are its server's greeting, which belongs to its first
// client.
func vetPeek(c *pconn) Outcome {
	if c.used {
		return vetUsed(c.peekUsed())
	}
	r := c.peek()
	if r == peekDead {
		return ClosedDead
	}
	return OutcomeNone
}

// checkOut vets an idle conn taken for a hand-out, without a round trip:
// age first, then clear the deadlines, then a peek. It returns
// OutcomeNone when c may be handed out.
func (p *Pool) checkOut(c *pconn) Outcome {
	if p.s.maxLifetime > 0 || p.s.idleTimeout > 0 {
		if out := p.aged(c, time.Now()); out != OutcomeNone {
			return out
		}
	}
	if c.conn.SetDeadline(time.Time{}) != nil {
		return ClosedDead
	}
	return vetPeek(c)
}
