package splice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is the deadline Join sets to stop a blocked direction.
var aLongTimeAgo = time.Unix(1, 0)

// closeWriter is a conn that can pass a FIN on (*net.TCPConn,
// *net.UnixConn, *tls.Conn).
type closeWriter interface {
	CloseWrite() error
}

// session is the state one Join shares between its two directions and
// its two callbacks (ctx and idle timer).
type session struct {
	opt   Options
	drain time.Duration // opt.drainTimeout()
	start time.Time

	// client and upstream are the conns as given: FINs are passed on with
	// their own CloseWrite. cio and uio carry the I/O and the deadlines:
	// the same conns, or, when spliced, the sockets under transparent
	// wrappers.
	client, upstream net.Conn
	cio, uio         net.Conn

	up, down direction

	// seq orders deliveries across both directions (see direction.seq).
	seq atomic.Uint64
	// halted is set by stop after both deadlines are in the past: a
	// direction that is copying without waiting checks it between chunks,
	// so that it stops there rather than read bytes it can no longer
	// deliver.
	halted atomic.Bool

	wg sync.WaitGroup // copyToClient

	mu sync.Mutex
	// The fields below are guarded by mu.

	// finished is set when both directions have returned: from then on no
	// callback may touch the conns.
	finished bool
	// stopped: both conns have deadlines in the past, for stopReason
	// (EndIdle, EndCanceled or EndInterrupted).
	stopped    bool
	stopReason End
	// draining: with Reuse, the client's FIN is held back and the
	// upstream's read deadline is the drain limit; finAt is when the FIN
	// arrived (since start).
	draining bool
	finAt    time.Duration

	idle    *time.Timer // nil without IdleTimeout
	stopCtx func() bool // unregisters the ctx callback; nil if none
	first   Side        // Result.First
	end     End         // Result.FirstEnd
	err     error       // Result.Err
	eof     bool        // Result.UpstreamEOF
	upHalf  bool        // Result.UpstreamHalfClosed
	cliHalf bool        // Result.ClientHalfClosed
}

func newSession(client, upstream net.Conn, opt Options) *session {
	s := &session{
		opt:      opt,
		drain:    opt.drainTimeout(),
		start:    time.Now(),
		client:   client,
		upstream: upstream,
		cio:      client,
		uio:      upstream,
	}
	s.up = direction{s: s, srcSide: Client, dstSide: Upstream}
	s.down = direction{s: s, srcSide: Upstream, dstSide: Client}
	setupSplice(s) // may replace cio and uio
	s.up.src, s.up.dst = s.cio, s.uio
	s.down.src, s.down.dst = s.uio, s.cio
	return s
}

// begin registers the ctx callback and starts the idle timer.
func (s *session) begin(ctx context.Context) {
	if ctx.Err() != nil {
		s.stop(EndCanceled)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopCtx = context.AfterFunc(ctx, s.cancel)
	if d := s.opt.IdleTimeout; d > 0 {
		s.idle = time.AfterFunc(d, s.checkIdle)
	}
}

// run copies both ways until the session ends: the client -> upstream
// direction on Join's caller, the other on a goroutine of its own
// (copyToClient). It stays out of Join's frame, so that only its own
// small frame is on the stack under the copy.
//
//go:noinline
func (s *session) run(ctx context.Context) {
	s.begin(ctx)
	s.wg.Add(1)
	go s.copyToClient()
	s.copyToUpstream()
	s.wg.Wait()
}

// copyToUpstream runs the client -> upstream direction (on Join's caller).
func (s *session) copyToUpstream() {
	s.up.run()
}

// copyToClient runs the upstream -> client direction on its own goroutine.
func (s *session) copyToClient() {
	defer s.wg.Done()
	s.down.run()
}

// cancel is the ctx callback.
func (s *session) cancel() { s.stop(EndCanceled) }

// checkIdle is the idle timer's callback: it stops the session if nothing
// moved for IdleTimeout, or re-arms itself for the rest of the period.
// Directions only store their last activity; there is no timer per chunk.
func (s *session) checkIdle() {
	last := time.Duration(max(s.up.act.Load(), s.down.act.Load()))
	if rest := last + s.opt.IdleTimeout - time.Since(s.start); rest > 0 {
		s.mu.Lock()
		if !s.finished && !s.stopped {
			s.idle.Reset(rest)
		}
		s.mu.Unlock()
		return
	}
	s.stop(EndIdle)
}

// stop interrupts both directions with deadlines in the past on both
// conns, reads and writes alike: a writer blocked on a peer that does not
// read must stop too. The first stop wins; none after finish.
func (s *session) stop(reason End) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.stopped {
		return
	}
	s.stopped, s.stopReason = true, reason
	if reason != EndInterrupted {
		s.setFirstLocked(NoSide, reason)
	}
	s.cio.SetDeadline(aLongTimeAgo)
	s.uio.SetDeadline(aLongTimeAgo)
	s.halted.Store(true)
}

func (s *session) setFirstLocked(side Side, end End) {
	if s.end == EndNone {
		s.first, s.end = side, end
	}
}

// failLocked records a real error on side.
func (s *session) failLocked(side Side, err error) {
	if s.err == nil {
		s.err = err
	}
	s.setFirstLocked(side, EndError)
}

// endWrite ends d after a failed write.
func (s *session) endWrite(d *direction, err error) {
	s.mu.Lock()
	if s.stopped && errors.Is(err, os.ErrDeadlineExceeded) {
		d.res.End = s.stopReason
	} else {
		d.res.End = EndError
		d.res.Err = fmt.Errorf("splice: write %s: %w", d.dstSide, err)
		s.failLocked(d.dstSide, d.res.Err)
	}
	d.ended = true
	s.mu.Unlock()
	if d.res.End == EndError {
		s.stop(EndInterrupted)
	}
}

// endRead handles a failed read of d. It reports whether d goes on
// copying (a drain limit that was re-armed or turned into a half-close).
func (s *session) endRead(d *direction, err error) (again bool) {
	timeout := errors.Is(err, os.ErrDeadlineExceeded)
	s.mu.Lock()
	switch {
	case timeout && s.stopped:
		d.res.End = s.stopReason
	case timeout && s.draining && d == &s.down:
		return s.drainTimeoutLocked()
	default:
		d.res.End = EndError
		d.res.Err = fmt.Errorf("splice: read %s: %w", d.srcSide, err)
		s.failLocked(d.srcSide, d.res.Err)
	}
	d.ended = true
	s.mu.Unlock()
	if d.res.End == EndError {
		s.stop(EndInterrupted)
	}
	return false
}

// drainTimeoutLocked runs on copyToClient when the drain deadline on the
// upstream passed. It is called with mu held and unlocks it.
func (s *session) drainTimeoutLocked() (again bool) {
	d := &s.down
	if s.up.seq.Load() > d.seq.Load() {
		// A reply is owed and none started within the drain limit. Give
		// up reuse and pass the FIN on, for protocols that wait for it
		// before they answer; the reply then flows as in a plain
		// half-close.
		s.draining = false
		s.uio.SetReadDeadline(time.Time{})
		s.mu.Unlock()
		if s.passFIN(Upstream) {
			return true
		}
		// The FIN cannot be passed on: end rather than wait for a reply
		// that may never come.
		s.mu.Lock()
		d.res.End = EndInterrupted
		d.ended = true
		s.mu.Unlock()
		return false
	}
	quietSince := max(s.finAt, d.lastRead)
	if time.Since(s.start)-quietSince >= s.drain {
		d.res.End = EndDrained
		d.ended = true
		s.mu.Unlock()
		return false
	}
	s.uio.SetReadDeadline(s.start.Add(quietSince + s.drain))
	s.mu.Unlock()
	return true
}

// endEOF ends d after its source sent FIN, and passes the FIN on (or,
// with Reuse, holds the client's FIN back and starts draining).
func (s *session) endEOF(d *direction) {
	d.res.End = EndEOF
	s.mu.Lock()
	d.ended = true
	s.setFirstLocked(d.srcSide, EndEOF)
	if d == &s.up {
		hold := s.opt.Reuse && !s.eof && !s.down.ended
		if hold && !s.stopped {
			now := time.Now()
			s.draining = true
			s.finAt = now.Sub(s.start)
			s.uio.SetReadDeadline(now.Add(s.drain))
		}
		s.mu.Unlock()
		if !hold && !s.passFIN(Upstream) {
			s.stop(EndInterrupted)
		}
		return
	}
	s.eof = true
	held := s.draining
	s.draining = false
	s.mu.Unlock()
	if held {
		// The upstream is not reusable any more: pass the client's FIN
		// on after all, as in a plain half-close.
		s.passFIN(Upstream)
	}
	if !s.passFIN(Client) {
		s.stop(EndInterrupted)
	}
}

// passFIN passes a FIN on to side with its conn's CloseWrite. It reports
// false if the conn cannot half-close or CloseWrite failed (an error of
// the session).
func (s *session) passFIN(to Side) bool {
	c := s.upstream
	if to == Client {
		c = s.client
	}
	cw, ok := c.(closeWriter)
	if !ok {
		return false
	}
	err := cw.CloseWrite()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failLocked(to, fmt.Errorf("splice: close write %s: %w", to, err))
		return false
	}
	if to == Client {
		s.cliHalf = true
	} else {
		s.upHalf = true
	}
	return true
}

// finish runs after both directions returned: it makes sure no callback
// can set a deadline any more, clears the deadlines and builds the result.
func (s *session) finish(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	if s.stopCtx != nil {
		s.stopCtx()
	}
	if s.idle != nil {
		s.idle.Stop()
	}
	clearDeadlines(s.cio, s.client)
	clearDeadlines(s.uio, s.upstream)

	*r = Result{
		Up:                 s.up.result(),
		Down:               s.down.result(),
		First:              s.first,
		FirstEnd:           s.end,
		UpstreamEOF:        s.eof,
		UpstreamHalfClosed: s.upHalf,
		ClientHalfClosed:   s.cliHalf,
		Err:                s.err,
		Start:              s.start,
		Stop:               time.Now(),
	}
	switch us, ds := s.up.seq.Load(), s.down.seq.Load(); {
	case us > ds:
		r.LastDir, r.LastAt = ToUpstream, r.Up.Last
	case ds > us:
		r.LastDir, r.LastAt = ToClient, r.Down.Last
	}
}

// clearDeadlines clears the deadlines of the conn Join used and, if it
// differs, of the conn as given.
func clearDeadlines(io, given net.Conn) {
	io.SetDeadline(time.Time{})
	if given != io {
		given.SetDeadline(time.Time{})
	}
}
