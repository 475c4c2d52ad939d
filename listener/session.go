package listener

import (
	"cmp"
	"context"
	"net"
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
	// on the heap, rather than on its frame, which stays on the stack
	// under the copy for the whole session: with small frames the
	// goroutine's stack never grows past its first 2 KiB (see
	// splice.JoinTo).
	lease pool.Lease
	res   splice.Result
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
}

func (s *session) state() SessionState {
	st := SessionState{ID: s.id, ClientAddr: s.client.RemoteAddr(), Start: s.start, Phase: Phase(s.phase.Load())}
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
// Its frame, and those of the functions it calls, are kept small: this
// goroutine's stack is most of what an idle session costs, and Go grows
// a stack by doubling it, never shrinking it back while the session
// lives. Whatever is large lives in s (the lease, the Result) or in the
// frames of endFailed and reportCopied (the SessionInfo), which come
// after the copy.
func (l *ProxyListener) serveSession(s *session) {
	defer l.sessionDone(s)
	if l.acquire(s) {
		splice.JoinTo(l.hardCtx, s.client, s.lease.Conn(), l.opts, &s.res)
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
	s.phase.Store(uint32(PhaseGetUpstream))

	lease, err := l.getUpstream()
	if err != nil {
		l.stats.upstreamFailures.Add(1)
		l.endFailed(s, &UpstreamError{Err: err})
		return false
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

// endCopied ends a session after its copy: it closes the client, releases
// the upstream with the verdict, then records, logs and reports.
//
// Release (and a Reset hook such as a fence, under it) runs deepest on
// this goroutine's stack, so endCopied's frame stays small. The
// SessionInfo, 400 bytes, is built only when a log record or
// OnSessionEnd wants it, in reportCopied, after Release returned: on this
// path every frame counts, since a 2 KiB stack that overflows is copied
// into one twice its size, which costs more than the rest of the
// session's user-space work.
//
//go:noinline
func (l *ProxyListener) endCopied(s *session) {
	lease := s.lease
	s.lease = pool.Lease{}
	clientAddr := s.client.RemoteAddr() // before Close: a wrapper may forget it
	// The client goes first: it must not wait for the pool's checks.
	s.client.Close()
	s.phase.Store(uint32(PhaseRelease))
	outcome := lease.Release(l.verdictOf(&s.res))
	l.stats.record(&s.res)
	if logs := l.log.logsEnded(s.res.Err); logs || l.cfg.OnSessionEnd != nil {
		l.reportCopied(s, clientAddr, lease.Source(), outcome, logs)
	}
}

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

// getUpstream takes an upstream from the pool under GetTimeout (and
// Close). An idle one needs no wait, so no timer: TryGet first.
func (l *ProxyListener) getUpstream() (pool.Lease, error) {
	if lease, ok := l.pool.TryGet(); ok {
		return lease, nil
	}
	ctx, cancel := context.WithTimeout(l.hardCtx, l.cfg.getTimeout())
	defer cancel()
	return l.pool.Get(ctx)
}

// handshaker is a client conn that completes a handshake of its own
// before its first byte, such as *tls.Conn.
type handshaker interface {
	HandshakeContext(context.Context) error
}

// handshake completes a TLS client's handshake under HandshakeTimeout
// (and Close), so that a client that stalls in it never holds an upstream.
func (l *ProxyListener) handshake(c net.Conn) error {
	h, ok := c.(handshaker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(l.hardCtx, l.cfg.handshakeTimeout())
	defer cancel()
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
	return pool.Verdict{Used: r.Used(), Clean: r.UpstreamClean()}
}
