package listenertest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/internal/deadline"
	"github.com/relaykit/relay/listener"
)

// Session is one accepted client connection on its way through the
// forwarder: a handle for assertions and for acting on it alone. Its
// methods are safe for concurrent use, also from a HookFunc, and are
// no-ops (or report an error) once the session has ended.
type Session struct {
	f     *Forwarder
	id    uint64
	start time.Time
	c     *clientConn
	dirs  [2]dirState

	// halfUp is set by CloseWrite(Upstream): the client's stream ends
	// there, as far as the upstream is concerned.
	halfUp atomic.Bool

	// ended is closed when the ProxyListener reported the session's end.
	ended chan struct{}
	// done is closed when the client conn is closed, by anyone: every
	// fault wait of the session ends.
	done chan struct{}

	mu       sync.Mutex
	paused   [2]bool
	wake     chan struct{} // closed and replaced when paused changes
	closed   bool          // the client conn is closed (done is closed)
	slowDone bool          // the Downstream SlowClose delay was served
	timers   []*time.Timer // ResetAfter timers
	info     *listener.SessionInfo
}

func newSession(f *Forwarder, id uint64, c net.Conn) *Session {
	s := &Session{
		f:     f,
		id:    id,
		start: time.Now(),
		ended: make(chan struct{}),
		done:  make(chan struct{}),
		wake:  make(chan struct{}),
	}
	s.c = &clientConn{s: s, inner: c, rdl: deadline.New(), wdl: deadline.New()}
	s.c.addr = &clientAddr{Addr: c.RemoteAddr(), s: s}
	for i := range s.dirs {
		d := &s.dirs[i]
		d.s, d.idx = s, i
		d.rng = rand.New(rand.NewPCG(f.seed, id<<1|uint64(i)))
	}
	s.dirs[0].dl = s.c.rdl
	s.dirs[1].dl = s.c.wdl
	return s
}

// ID numbers sessions from 1 in the order the forwarder accepted them.
func (s *Session) ID() uint64 { return s.id }

// ClientAddr is the client's address (its conn's local address).
func (s *Session) ClientAddr() net.Addr { return s.c.addr.Addr }

// Done returns a channel that is closed when the session has ended: the
// ProxyListener released its upstream (or failed to get one) and
// reported it.
func (s *Session) Done() <-chan struct{} { return s.ended }

// SessionState is a snapshot of a session.
type SessionState struct {
	ID         uint64
	ClientAddr net.Addr
	Start      time.Time
	// Phase is where the ProxyListener is with the session while it is
	// live (listener.PhaseGetUpstream before it has an upstream).
	Phase listener.Phase
	// ToUpstream and ToClient count the bytes the faults passed on each
	// way so far (toward the client, a write is counted as it starts, so
	// the count never lags what the client may have read).
	ToUpstream, ToClient int64
	// Paused names the directions paused with Session.Pause (0 if none).
	Paused Direction
	// Closed reports that the client conn is closed.
	Closed bool
	// Ended reports that the ProxyListener reported the session's end;
	// Info is that report (zero while the session is live). Its
	// Outcome.Kept() says whether the pool kept the upstream.
	Ended bool
	Info  listener.SessionInfo
}

// String formats the state on one line, for failure messages.
func (st SessionState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "session %d (client %v): ", st.ID, st.ClientAddr)
	switch {
	case st.Ended:
		fmt.Fprintf(&b, "ended, outcome %v", st.Info.Outcome)
	default:
		fmt.Fprintf(&b, "phase %v", st.Phase)
	}
	fmt.Fprintf(&b, ", %d B to upstream, %d B to client", st.ToUpstream, st.ToClient)
	if st.Paused != 0 {
		fmt.Fprintf(&b, ", paused %v", st.Paused)
	}
	if st.Closed && !st.Ended {
		b.WriteString(", client closed")
	}
	return b.String()
}

// State returns a snapshot of the session.
func (s *Session) State() SessionState {
	st := SessionState{
		ID:         s.id,
		ClientAddr: s.c.addr.Addr,
		Start:      s.start,
		ToUpstream: s.dirs[0].bytes.Load(),
		ToClient:   s.dirs[1].bytes.Load(),
	}
	s.mu.Lock()
	for i, p := range s.paused {
		if p {
			st.Paused |= dirOf(i)
		}
	}
	st.Closed = s.closed
	if s.info != nil {
		st.Ended, st.Info = true, *s.info
	}
	s.mu.Unlock()
	if !st.Ended {
		for _, ls := range s.f.pl.Sessions() {
			if a, ok := ls.ClientAddr.(*clientAddr); ok && a.s == s {
				st.Phase = ls.Phase
				break
			}
		}
	}
	return st
}

// Pause holds the session's bytes in dir (Upstream, Downstream or Both)
// until Resume, like a Blackhole for this session alone. A chunk being
// passed on when Pause is called may still go.
func (s *Session) Pause(dir Direction) { s.setPaused(dir, true, "Pause") }

// Resume lets the session's bytes in dir flow again.
func (s *Session) Resume(dir Direction) { s.setPaused(dir, false, "Resume") }

func (s *Session) setPaused(dir Direction, on bool, who string) {
	idx := dir.indexes("Session." + who)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range idx {
		s.paused[i] = on
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

// Cut closes the client's connection: the client sees EOF (or a reset,
// if it had sent bytes that were not passed on yet, by the kernel's
// rule). The copy then fails, and the ProxyListener releases the upstream
// as unclean: the pool closes it, so the upstream sees EOF. Cut returns
// an error if the connection was closed already.
func (s *Session) Cut() error { return s.shut(false) }

// Reset closes the client's connection with an RST (SO_LINGER 0): the
// client's next read or write fails with "connection reset by peer". The
// upstream is then closed by the pool, as after Cut. Reset returns an
// error if the connection was closed already.
func (s *Session) Reset() error { return s.shut(true) }

// CloseWrite half-closes the session in dir. Downstream: a FIN is sent
// to the client, as if the upstream had finished; the client can still
// send. Upstream: the client's stream ends here as far as the forwarder
// is concerned, so splice passes a FIN on to the upstream (or, with a
// reuse policy, drains it first), as after a real client FIN; what the
// client sends afterwards is never read. Both does both.
func (s *Session) CloseWrite(dir Direction) error {
	var err error
	for _, i := range dir.indexes("Session.CloseWrite") {
		if i == 0 {
			s.halfUp.Store(true)
			s.c.kick()
			continue
		}
		cw, ok := s.c.inner.(closeWriter)
		if !ok {
			err = s.c.opError("close", fmt.Errorf("listenertest: client conn cannot half-close"))
			continue
		}
		if e := cw.CloseWrite(); e != nil {
			err = e
		}
	}
	return err
}

// String formats the session's current state (see SessionState.String).
func (s *Session) String() string { return s.State().String() }

// shut closes the client conn, with an RST if reset, once; it ends every
// fault wait of the session.
func (s *Session) shut(reset bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.c.opError("close", net.ErrClosed)
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.c.rdl.Set(time.Time{})
	s.c.wdl.Set(time.Time{})
	if reset {
		return resetConn(s.c.inner)
	}
	return s.c.inner.Close()
}

// shutErrIf returns the error of an operation on a shut conn, or nil.
func (s *Session) shutErrIf(op string) error {
	select {
	case <-s.done:
		return s.shutErr(op)
	default:
		return nil
	}
}

func (s *Session) shutErr(op string) error { return s.c.opError(op, net.ErrClosed) }

// end ends the session the way a fault says, and returns the error for
// the operation that saw it.
func (s *Session) end(k endKind, op, why string) error {
	how := "cut"
	if k == endReset {
		how = "reset"
	}
	s.shut(k == endReset)
	return s.c.opError(op, fmt.Errorf("listenertest: session %s (%s): %w", how, why, net.ErrClosed))
}

// resetIn resets the session after d (ResetAfter).
func (s *Session) resetIn(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.timers = append(s.timers, time.AfterFunc(d, func() {
		if !s.f.enter() {
			return
		}
		defer s.f.leave()
		s.shut(true)
	}))
}

// stopTimers stops the ResetAfter timers.
func (s *Session) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.timers {
		t.Stop()
	}
	s.timers = nil
}

// slowCloseDelay draws the Downstream SlowClose delay, once per session:
// it reports zero if it was served already.
func (s *Session) slowCloseDelay() time.Duration {
	s.mu.Lock()
	if s.slowDone || s.closed {
		s.mu.Unlock()
		return 0
	}
	s.slowDone = true
	s.mu.Unlock()
	d := &s.dirs[1]
	d.io.Lock()
	defer d.io.Unlock()
	return d.slowClose(s.f.faults[1].Load())
}

// slowCloseWrite serves the Downstream SlowClose delay before a FIN to
// the client. The write deadline cuts it short (splice is stopping).
func (s *Session) slowCloseWrite() {
	if delay := s.slowCloseDelay(); delay > 0 {
		s.dirs[1].sleepUntil("close", time.Now().Add(delay))
	}
}

// slowClose serves the Downstream SlowClose delay before the close of
// the client conn. Only Cut, Reset or the forwarder's stop cut it short.
func (s *Session) slowClose() {
	delay := s.slowCloseDelay()
	if delay <= 0 {
		return
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
	case <-s.f.stop:
	}
}

// release drops what an ended session no longer needs.
func (s *Session) release() {
	for i := range s.dirs {
		d := &s.dirs[i]
		if d.io.TryLock() {
			d.pending, d.pendBuf = nil, nil
			d.buckets, d.draws = nil, nil
			d.io.Unlock()
		}
	}
}
