package listener

import (
	"cmp"
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// session is one accepted connection on its way through the forwarder.
type session struct {
	id     uint64
	client net.Conn
	start  time.Time
	phase  atomic.Uint32 // a Phase
	// upstream is set once the pool handed a connection out.
	upstream atomic.Pointer[net.Addr]

	// lease and res belong to serveSession's goroutine. They live here,
	// not on its frame, which stays under the copy for the whole session
	// (small frames: see the ledger in bench/README.md).
	lease pool.Lease
	res   splice.Result
	// progress counts the bytes delivered so far, for Sessions.
	progress splice.Progress
	// target is where the session's upstream comes from (set by acquire).
	target *target
	// ip is the client's address while it holds a MaxSessionsPerIP slot.
	ip netip.Addr
	// owned: bytes outside the copy went to the upstream (a PROXY header,
	// a peeked ClientHello), so it is closed after the session.
	owned bool
}

// Phase is where a live session is.
type Phase uint32

const (
	// PhaseHandshake: completing a TLS client's handshake.
	PhaseHandshake Phase = iota
	// PhaseGetUpstream: waiting for an upstream connection from the pool.
	PhaseGetUpstream
	// PhaseCopy: copying bytes both ways.
	PhaseCopy
	// PhaseRelease: handing the upstream back to the pool.
	PhaseRelease
	// PhaseLinger: the upstream is released; a client that may still be
	// sending has had its FIN and is read (and what it sends discarded)
	// for at most LingerTimeout before it is closed.
	PhaseLinger
	// PhasePeek: reading a client's ClientHello for its server name
	// (Config.Routes).
	PhasePeek
)

// String returns the phase's name as logs show it.
func (p Phase) String() string {
	switch p {
	case PhaseHandshake:
		return "handshake"
	case PhaseGetUpstream:
		return "get-upstream"
	case PhaseCopy:
		return "copy"
	case PhaseRelease:
		return "release"
	case PhaseLinger:
		return "linger"
	case PhasePeek:
		return "peek"
	default:
		return "unknown"
	}
}

// SessionState describes a live session.
type SessionState struct {
	ID           uint64
	ClientAddr   net.Addr
	UpstreamAddr net.Addr // nil until an upstream was obtained
	Start        time.Time
	Phase        Phase
	// BytesToUpstream and BytesToClient are the bytes delivered each way
	// so far.
	BytesToUpstream, BytesToClient int64
}

func (s *session) state() SessionState {
	st := SessionState{ID: s.id, ClientAddr: s.client.RemoteAddr(), Start: s.start, Phase: Phase(s.phase.Load()),
		BytesToUpstream: s.progress.ToUpstream.Load(), BytesToClient: s.progress.ToClient.Load()}
	if a := s.upstream.Load(); a != nil {
		st.UpstreamAddr = *a
	}
	return st
}

func sortStates(s []SessionState) {
	slices.SortFunc(s, func(a, b SessionState) int { return cmp.Compare(a.ID, b.ID) })
}

// startSession registers c and starts its goroutine. It reports false
// when the ProxyListener is already closing (the caller closes c).
func (l *ProxyListener) startSession(c net.Conn) bool {
	l.mu.Lock()
	if l.closed() {
		l.mu.Unlock()
		return false
	}
	l.nextID++
	s := &session{id: l.nextID, client: c, start: time.Now()}
	l.sessions[s] = struct{}{}
	l.sessWG.Add(1)
	l.mu.Unlock()

	l.stats.sessions.Add(1)
	l.stats.active.Add(1)
	go l.serveSession(s)
	return true
}

// serveSession runs one session from getting an upstream to releasing
// it. It is a named function so that it is recognisable in stack dumps.
//
// Its frame, and those of the functions it calls, are kept small: what
// is large lives in s (the lease, the Result) or in the frames of
// endFailed and reportCopied (the SessionInfo), after the copy (see the
// ledger in bench/README.md).
func (l *ProxyListener) serveSession(s *session) {
	defer l.sessionDone(s)
	if l.acquire(s) {
		opts := s.target.opts
		opts.Progress = &s.progress
		splice.JoinTo(l.hardCtx, s.client, s.lease.Conn(), opts, &s.res)
		l.endCopied(s)
	}
}

// acquire completes a TLS client's handshake and takes an upstream for
// s (into s.lease). On failure it ends the session and reports false.
//
//go:noinline
func (l *ProxyListener) acquire(s *session) bool {
	if err := l.handshake(s.client); err != nil {
		l.stats.handshakeFailures.Add(1)
		l.endFailed(s, &HandshakeError{Err: err})
		return false
	}
	if !l.admit(s) {
		return false
	}
	t := l.def
	var peeked *[]byte
	if l.routes != nil {
		s.phase.Store(uint32(PhasePeek))
		var ok bool
		if t, peeked, ok = l.route(s); !ok {
			return false
		}
		defer putPeeked(peeked)
	}
	s.target = t
	s.phase.Store(uint32(PhaseGetUpstream))

	lease, err := l.getUpstream(t, s.client)
	if err != nil {
		l.stats.upstreamFailures.Add(1)
		l.endFailed(s, &UpstreamError{Err: err})
		return false
	}
	if l.cfg.SendProxy != ProxyNone || (peeked != nil && len(*peeked) > 0) {
		s.owned = true
		if err := l.prime(s, lease.Conn(), peeked); err != nil {
			// A write cut by Close says nothing about the server.
			lease.Release(pool.Verdict{Used: true, UpstreamFailed: l.hardCtx.Err() == nil})
			l.stats.upstreamFailures.Add(1)
			l.endFailed(s, &UpstreamError{Err: err})
			return false
		}
	}
	s.lease = lease
	upAddr := lease.Conn().RemoteAddr()
	s.upstream.Store(&upAddr)
	s.phase.Store(uint32(PhaseCopy))
	return true
}

// sessionDone unregisters a session whose goroutine is about to return.
func (l *ProxyListener) sessionDone(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
	if s.ip.IsValid() {
		l.perIP.give(s.ip)
	}
	l.stats.active.Add(-1)
	l.releaseSlot()
	l.sessWG.Done()
}

// endFailed ends a session that got no upstream: the client must never
// hang, so it is closed at once, and the failure logged and reported.
//
//go:noinline
func (l *ProxyListener) endFailed(s *session, err error) {
	info := SessionInfo{ID: s.id, ClientAddr: s.client.RemoteAddr(), Start: s.start, Err: err}
	s.client.Close()
	info.Duration = time.Since(s.start)
	l.log.clientFailed(&info)
	l.endSession(&info)
}

// endCopied ends a session after its copy: it closes the client (or, when
// the client may still be sending, half-closes it: see shutClient),
// releases the upstream with the verdict, records, logs and reports, and
// then finishes a lingering close of the client.
//
// Release (and a Reset under it) runs deepest on this goroutine's
// stack, so endCopied's frame stays small: the SessionInfo is built only
// when a log record or OnSessionEnd wants it, in reportCopied, after
// Release returned.
//
//go:noinline
func (l *ProxyListener) endCopied(s *session) {
	lease := s.lease
	s.lease = pool.Lease{}
	clientAddr := s.client.RemoteAddr() // before Close: a wrapper may forget it
	// The client goes first: it must not wait for the pool's checks.
	linger := l.shutClient(s.client, &s.res)
	s.phase.Store(uint32(PhaseRelease))
	v := l.verdictOf(&s.res)
	if s.owned {
		v.Used, v.Clean = true, false
	}
	outcome := lease.Release(v)
	if linger {
		s.phase.Store(uint32(PhaseLinger))
	}
	l.stats.record(&s.res)
	if logs := l.log.logsEnded(s.res.Err); logs || l.cfg.OnSessionEnd != nil {
		l.reportCopied(s, clientAddr, lease.Source(), outcome, logs)
	}
	if linger {
		l.lingerClose(s.client)
	}
}

// LingerTimeout bounds the lingering close of a client that may still be
// sending when its session ends: how long its input is read and
// discarded after its FIN, before it is closed.
const LingerTimeout = 500 * time.Millisecond

// closeWriter is a conn that can send a FIN while it still reads.
type closeWriter interface {
	CloseWrite() error
}

// shutClient starts closing the client after its copy, and reports
// whether lingerClose must finish the job.
//
// A client may still be sending when the copy stopped reading it before
// its FIN: the upstream answered and went away, say. Closing it with
// input unread would make the kernel send a reset instead of a FIN, and
// a reset can destroy what was just delivered to the client (the last
// reply) before the client read it: the bytes still queued here are
// dropped, and some clients' kernels drop what they received but their
// program has not read yet. Such a client is only half-closed here (its
// FIN follows the bytes delivered), with a read deadline l.linger from
// now; the close waits for lingerClose, after Release, so the upstream
// never waits for it. Any other client, and one that cannot half-close,
// is closed at once. (For a TLS client, CloseWrite sends close_notify, as
// Close does; crypto/tls bounds that write.)
func (l *ProxyListener) shutClient(c net.Conn, r *splice.Result) bool {
	if l.linger > 0 && mayStillSend(r) {
		if cw, ok := c.(closeWriter); ok && cw.CloseWrite() == nil &&
			c.SetReadDeadline(time.Now().Add(l.linger)) == nil {
			return true
		}
	}
	c.Close()
	return false
}

// mayStillSend reports whether the copy stopped reading the client before
// its FIN, other than by the idle limit (it was not sending) or ctx (Close
// wants it gone now): a failed write or read on the upstream's side. When
// the error was the client's own (a reset), its CloseWrite fails and
// shutClient closes it at once.
func mayStillSend(r *splice.Result) bool {
	switch r.Up.End {
	case splice.EndEOF, splice.EndIdle, splice.EndCanceled:
		return false
	}
	return true
}

// lingerClose finishes a lingering close begun by shutClient: it reads
// and discards what the client still sends until the client's FIN or
// reset, the read deadline shutClient set, or Close (or Shutdown's ctx
// ending), and then closes it. A client that sends forever is closed when
// the deadline passes.
//
//go:noinline
func (l *ProxyListener) lingerClose(c net.Conn) {
	stop := context.AfterFunc(l.hardCtx, func() { c.SetReadDeadline(aLongTimeAgo) })
	io.Copy(io.Discard, c)
	stop()
	c.Close()
}

// aLongTimeAgo is a deadline in the past: it makes a blocked Read return.
var aLongTimeAgo = time.Unix(1, 0)

// reportCopied logs (when logs) and reports a session that ended after
// its copy.
//
//go:noinline
func (l *ProxyListener) reportCopied(s *session, clientAddr net.Addr, src pool.Source, outcome pool.Outcome, logs bool) {
	res := &s.res
	info := SessionInfo{ID: s.id, ClientAddr: clientAddr, Start: s.start}
	info.Source = src
	info.UpstreamAddr = *s.upstream.Load()
	info.Result = *res
	info.Outcome = outcome
	info.Err = res.Err
	info.Duration = time.Since(s.start)
	if logs {
		l.log.sessionEnded(&info)
	}
	l.endSession(&info)
}

// getUpstream takes an upstream from t for client under GetTimeout
// (and Close).
func (l *ProxyListener) getUpstream(t *target, client net.Conn) (pool.Lease, error) {
	ctx, cancel := context.WithTimeout(l.hardCtx, l.cfg.getTimeout())
	defer cancel()
	if t.getFor != nil {
		return t.getFor.GetFor(ctx, client.RemoteAddr())
	}
	return t.up.Get(ctx)
}

// handshaker is a client conn that completes a handshake of its own
// before its first byte, such as *tls.Conn.
type handshaker interface {
	HandshakeContext(context.Context) error
}

// handshake runs Config.Prepare and completes a TLS client's handshake,
// both under HandshakeTimeout (and Close), so that a client that stalls
// in either never holds an upstream.
func (l *ProxyListener) handshake(c net.Conn) error {
	h, ok := c.(handshaker)
	if !ok && l.cfg.Prepare == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(l.hardCtx, l.cfg.handshakeTimeout())
	defer cancel()
	if l.cfg.Prepare != nil {
		if err := l.cfg.Prepare(ctx, c); err != nil {
			return err
		}
	}
	if !ok {
		return nil
	}
	return h.HandshakeContext(ctx)
}

func (l *ProxyListener) endSession(info *SessionInfo) {
	if l.cfg.OnSessionEnd != nil {
		l.cfg.OnSessionEnd(*info)
	}
}

// verdictOf is the reuse rule: the pool may keep the upstream only when
// the copy says it is clean (see splice.Result.UpstreamClean).
func (l *ProxyListener) verdictOf(r *splice.Result) pool.Verdict {
	if l.verdict != nil {
		return l.verdict(r)
	}
	return pool.Verdict{Used: r.Used(), Clean: r.UpstreamClean(), UpstreamFailed: upstreamFailed(r)}
}

// upstreamFailed reports that the upstream ended the session first, with
// an error (a reset), before sending a byte: a health signal for a set of
// servers. A plain FIN does not count: some protocols end a session that
// way on the client's word (memcached's quit). Nor does anything after a
// client that left first.
func upstreamFailed(r *splice.Result) bool {
	return r.First == splice.Upstream && r.Down.Read == 0 && r.Down.End == splice.EndError
}
