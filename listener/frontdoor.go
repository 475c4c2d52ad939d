package listener

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/relaykit/relay/pool"
)

// admit applies Config.Access and MaxSessionsPerIP to s's client. A
// refused client is closed, counted and (rate-limited) logged.
func (l *ProxyListener) admit(s *session) bool {
	if l.cfg.Access.empty() && l.perIP == nil {
		return true
	}
	ip := addrIP(s.client.RemoteAddr())
	if !l.cfg.Access.Permits(ip) {
		l.endRefused(s, RefusedDenied)
		return false
	}
	if l.perIP != nil && ip.IsValid() {
		if !l.perIP.take(ip) {
			l.endRefused(s, RefusedPerIP)
			return false
		}
		s.ip = ip
	}
	return true
}

// route peeks at s's ClientHello and returns the target its server name
// routes to (the default when none does), with the peeked bytes to
// replay. On failure it ends the session and reports false.
func (l *ProxyListener) route(s *session) (*target, *[]byte, bool) {
	buf := peekBufs.Get().(*[]byte)
	*buf = (*buf)[:0]
	name, err := l.peek(s.client, buf)
	if errors.Is(err, ErrClosed) {
		putPeeked(buf)
		l.endFailed(s, &PeekError{Err: err})
		return nil, nil, false
	}
	if err != nil && !(len(*buf) == 0 && errors.Is(err, os.ErrDeadlineExceeded)) {
		// A client that sent nothing in time may speak second: it goes
		// to the default. One that sent part of a hello, or failed, ends.
		putPeeked(buf)
		l.stats.peekFailures.Add(1)
		l.endFailed(s, &PeekError{Err: err})
		return nil, nil, false
	}
	t := l.routes.lookup(name)
	if t == nil {
		t = l.def
	}
	if t == nil {
		putPeeked(buf)
		l.endRefused(s, RefusedNoRoute)
		return nil, nil, false
	}
	return t, buf, true
}

// peek runs peekServerName under PeekTimeout and Close (or Shutdown's
// ctx ending), which cut it as the deadline does.
func (l *ProxyListener) peek(c net.Conn, buf *[]byte) (string, error) {
	if err := c.SetReadDeadline(time.Now().Add(l.cfg.peekTimeout())); err != nil {
		return "", err
	}
	// Registered after the deadline is set, so that a cut that comes
	// first is not undone by it.
	stop := context.AfterFunc(l.hardCtx, func() { c.SetReadDeadline(aLongTimeAgo) })
	name, err := peekServerName(c, buf)
	if !stop() {
		return "", ErrClosed
	}
	if derr := c.SetReadDeadline(time.Time{}); err == nil && derr != nil {
		err = derr
	}
	return name, err
}

func putPeeked(b *[]byte) {
	if b != nil && cap(*b) <= maxPeek {
		peekBufs.Put(b)
	}
}

// prime writes to a freshly handed-out upstream what must precede the
// copy: the PROXY header (Config.SendProxy), then the client's peeked
// bytes. It is bounded by GetTimeout.
func (l *ProxyListener) prime(s *session, up net.Conn, peeked *[]byte) error {
	var hdr [64]byte
	b := hdr[:0]
	if l.cfg.SendProxy != ProxyNone {
		b = appendProxyHeader(b, l.cfg.SendProxy, s.client.RemoteAddr(), s.client.LocalAddr())
	}
	if peeked != nil {
		b = append(b, *peeked...)
	}
	if err := up.SetWriteDeadline(time.Now().Add(l.cfg.getTimeout())); err != nil {
		return err
	}
	stop := context.AfterFunc(l.hardCtx, func() { up.SetWriteDeadline(aLongTimeAgo) })
	_, err := up.Write(b)
	stop()
	if derr := up.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

// endRefused closes a client refused before an upstream was taken,
// counts it by reason and logs it, at most once a second per reason.
func (l *ProxyListener) endRefused(s *session, why Refusal) {
	l.stats.refused[why].Add(1)
	info := SessionInfo{ID: s.id, ClientAddr: s.client.RemoteAddr(), Start: s.start, Err: &RefusedError{Reason: why}}
	s.client.Close()
	info.Duration = time.Since(s.start)
	if n, ok := l.refusals.due(why); ok {
		l.log.l.Warn("client refused", "session", info.ID, "client", info.ClientAddr, "reason", why.String(), "suppressed", n)
	}
	l.endSession(&info)
}

// refusalLog rate-limits the "client refused" records: one per reason
// per second, with the number left out since the last.
type refusalLog struct {
	mu         sync.Mutex
	last       [RefusedNoRoute + 1]time.Time
	suppressed [RefusedNoRoute + 1]uint64
}

// due reports whether a record for why is due now, and how many were
// suppressed before it.
func (r *refusalLog) due(why Refusal) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last[why]) < time.Second {
		r.suppressed[why]++
		return 0, false
	}
	n := r.suppressed[why]
	r.last[why], r.suppressed[why] = now, 0
	return n, true
}

// poolStats sums the figures of every distinct Upstream: the default and
// the routes'.
func (l *ProxyListener) poolStats() pool.Stats {
	var st pool.Stats
	seen := map[*target]bool{}
	add := func(t *target) {
		if t != nil && !seen[t] {
			seen[t] = true
			st.Add(t.up.Stats())
		}
	}
	add(l.def)
	if l.routes != nil {
		for _, t := range l.routes.exact {
			add(t)
		}
		for _, t := range l.routes.wild {
			add(t)
		}
	}
	return st
}
