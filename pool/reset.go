package pool

import (
	"context"
	"errors"
	"net"
	"time"
)

// Reset returns a used connection to a neutral state before the pool
// keeps it for another client: Config.Reset, required with
// ReuseIfVerified. Its zero value is no Reset.
//
// A neutral state has two parts, and a Reset must prove both: the byte
// stream is aligned (no reply of the previous client is still owed or
// unread), and the protocol's session state is back to that of a fresh
// connection (no login, selected database, subscription, transaction or
// protocol version carried over). A fence alone (Fence) proves the first
// part only: use it as a Reset for a protocol that keeps no state per
// connection, or with a marker that also resets the state. RedisReset and
// MemcachedReset are ready-made for those servers.
type Reset struct {
	// Func does the work on c, the connection as Config.Dial returned it.
	// It runs at Release under a ctx bounded by Config.ResetTimeout and
	// ended by Close; the pool also sets c's deadline to the same instant
	// (so a Func that ignores ctx cannot hang) and clears the deadlines
	// afterwards. It returns nil only when c is neutral in bytes and in
	// state; any error closes c (ClosedResetFailed). An error that wraps
	// ErrResetRefused is logged once per pool at Warn: the server cannot
	// be reset, so its used connections are closed rather than reused.
	Func func(ctx context.Context, c net.Conn) error

	// Drains reports that Func reads everything still owed on c before it
	// returns nil, as a fence does. Release then skips Config.QuietPeriod,
	// and a caller that knows it (listener, through Pool.ResetDrains)
	// ends a session without waiting for late bytes after the client left.
	Drains bool

	// Settle is how long after Func returned the connection is kept from
	// every client; its hand-out then peeks it, and bytes that arrived in
	// the meantime close it as stale. It is for a fence whose fixed marker
	// may match an identical reply still owed, so that its own echo
	// follows (see Fence). Zero means none; negative is an error.
	Settle time.Duration
}

// ErrResetRefused is wrapped by a Reset's error when the server answered
// the reset itself with an error (for example Redis older than 6.2, which
// has no RESET command): no connection to it can be reset, and the pool
// logs this once.
var ErrResetRefused = errors.New("server refused the reset")

// ResetDrains reports whether the pool resets used connections with a
// Reset that drains (ReuseIfVerified and Config.Reset.Drains): late bytes
// of a session need no wait before Release then.
func (p *Pool) ResetDrains() bool {
	return p.s.reuse == ReuseIfVerified && p.s.reset.Drains
}

// runReset runs Config.Reset on c under ResetTimeout, with the conn's
// deadline set to the same instant as a backstop, and clears the
// deadlines afterwards.
func (p *Pool) runReset(c *pconn) error {
	ctx, cancel := context.WithTimeout(p.base, p.s.resetTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(deadline); err != nil {
		return err
	}
	err := p.s.reset.Func(ctx, c.conn)
	if cerr := c.conn.SetDeadline(time.Time{}); err == nil {
		err = cerr
	}
	if err != nil && errors.Is(err, ErrResetRefused) && !p.refusedLogged.Swap(true) {
		p.s.log.Warn("pool: upstream refused the reset; its used connections are closed, not reused", "err", err)
	}
	return err
}
