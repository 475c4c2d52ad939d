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
	// opt.DrainTimeout has its default applied, and is 0 once a
	// DrainOwedOnly drain found nothing owed.
	opt   Options
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

	idle *time.Timer // nil without IdleTimeout
	park *time.Timer // checkPark; nil unless down can park
	// parkAfter is how long copyToClient waits before it parks: zero
	// means defaultParkAfter (tests set it before run). parkBackoff
	// spaces out checkPark while the upstream keeps sending.
	parkAfter, parkBackoff time.Duration
	stopCtx                func() bool // unregisters the ctx callback; nil if none
	first                  Side        // Result.First
	end                    End         // Result.FirstEnd
	err                    error       // Result.Err
	eof                    bool        // Result.UpstreamEOF
	upHalf                 bool        // Result.UpstreamHalfClosed
	cliHalf                bool        // Result.ClientHalfClosed

	// testHook, when set by a test before run, runs at the points
	// named by hookPoint.
	testHook func(at hookPoint, side Side)
}

// hookPoint names a point where session.testHook runs.
type hookPoint uint8

const (
	hookWriteEnded hookPoint = iota // a write toward side failed; its direction has ended
	hookReadFailed                  // a read from side failed; endRead is about to take mu
	hookEOFHandled                  // a FIN from side was handled under mu (a drain begun, say)
)

// defaultParkAfter is how long an idle copyToClient of a spliced session
// waits for the upstream before it parks (see park).
const defaultParkAfter = 20 * time.Millisecond

func newSession(client, upstream net.Conn, opt Options) *session {
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = DefaultDrainTimeout
	}
	s := &session{
		opt:      opt,
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

// begin registers the ctx callback and starts the idle and park timers.
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
	if canPark && s.down.res.Spliced {
		if s.parkAfter <= 0 {
			s.parkAfter = defaultParkAfter
		}
		s.park = time.AfterFunc(s.parkAfter, s.checkPark)
	}
}

// run copies both ways until the session ends: the client -> upstream
// direction on Join's caller, the other on a goroutine of its own
// (copyToClient). It is kept out of Join's frame (see the ledger in
// bench/README.md).
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

// copyToClient runs the upstream -> client direction on its own
// goroutine: the first, or one that resumes it after it parked.
func (s *session) copyToClient() {
	if s.down.run() {
		return // parked: still counted in wg
	}
	s.wg.Done()
}

// checkPark is the park timer's callback: once copyToClient has moved
// nothing for parkAfter, and is not blocked delivering a chunk, it asks
// it to park, with a read deadline in the past on the upstream (endRead
// parks it). Else it re-arms itself: for the rest of the period when the
// direction has been quiet for more than half of it, otherwise later and
// later (up to maxParkBackoff), so that a busy session costs about one
// callback a second. It does nothing once the session is stopping,
// draining or half over.
func (s *session) checkPark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := &s.down
	if s.finished || s.stopped || s.draining || s.up.ended || d.ended || d.parked || d.parkReq {
		return
	}
	quiet := time.Since(s.start) - time.Duration(d.act.Load())
	if d.delivering.Load() {
		// Waiting for a slow client to take a chunk: busy, not idle.
		// Parking would only take it out of its read, and the data
		// waiting there would wake it at once.
		quiet = 0
	}
	if rest := s.parkAfter - quiet; rest > 0 {
		if quiet < s.parkAfter/2 {
			s.parkBackoff = min(2*max(s.parkBackoff, s.parkAfter), maxParkBackoff)
			rest = s.parkBackoff
		}
		s.park.Reset(rest)
		return
	}
	d.parkReq = true
	s.uio.SetReadDeadline(aLongTimeAgo)
}

// maxParkBackoff bounds the spacing of checkPark on a busy session, and
// so how long after its last byte such a session may wait to park.
const maxParkBackoff = time.Second

// unparkLocked resumes the parked copyToClient on a new goroutine, and
// re-arms the park timer while parking still makes sense. It is called
// with mu held.
func (s *session) unparkLocked() {
	d := &s.down
	unpark(d)
	d.parked = false
	go s.copyToClient()
	if !s.stopped && !s.up.ended {
		s.parkBackoff = 0
		s.park.Reset(s.parkAfter)
	}
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
	if s.down.parked {
		s.unparkLocked() // to see the deadline and end
	}
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

// endWrite ends d after a failed write. A real failure ends d alone: the
// bytes of d's source have nowhere to go, so d reads no more, but the
// other direction runs on until its own source ends (or the idle limit,
// ctx), so that whatever the far side sent before it went away, the
// last reply above all, is still delivered.
func (s *session) endWrite(d *direction, err error) {
	s.mu.Lock()
	if s.stopped && errors.Is(err, os.ErrDeadlineExceeded) {
		d.res.End = s.stopReason
	} else {
		d.res.End = EndError
		d.res.Err = fmt.Errorf("splice: write %s: %w", d.dstSide, err)
		s.failLocked(d.dstSide, d.res.Err)
	}
	s.endedLocked(d)
	s.mu.Unlock()
	if s.testHook != nil {
		s.testHook(hookWriteEnded, d.dstSide)
	}
}

// endedLocked marks d ended. When the client -> upstream direction ends,
// a parked copyToClient resumes: what follows (a drain, a half-close)
// needs it reading. It is called with mu held.
func (s *session) endedLocked(d *direction) {
	d.ended = true
	if d == &s.up && s.down.parked {
		s.unparkLocked()
	}
}

// readNext is what a direction does after a failed read.
type readNext uint8

const (
	readEnd    readNext = iota // the direction has ended
	readAgain                  // copy on
	readParked                 // the goroutine returns; see park
)

// endRead handles a failed read of d: the end of d, or a drain limit
// that was re-armed or turned into a half-close (readAgain), or a park.
func (s *session) endRead(d *direction, err error) readNext {
	if s.testHook != nil {
		s.testHook(hookReadFailed, d.srcSide)
	}
	timeout := errors.Is(err, os.ErrDeadlineExceeded)
	s.mu.Lock()
	next, giveUp, failed := readEnd, false, false
	switch {
	case timeout && s.stopped:
		d.res.End = s.stopReason
	case timeout && s.draining && d == &s.down:
		next, giveUp = s.drainLimitLocked()
	case timeout && d.parkReq:
		next = s.parkLocked(d)
	default:
		d.res.End = EndError
		d.res.Err = fmt.Errorf("splice: read %s: %w", d.srcSide, err)
		s.failLocked(d.srcSide, d.res.Err)
		failed = true
	}
	if next == readEnd {
		s.endedLocked(d)
	}
	s.mu.Unlock()
	if giveUp && !s.passFIN(Upstream) {
		// The FIN cannot be passed on: end rather than wait for a reply
		// that may never come.
		s.mu.Lock()
		d.res.End = EndInterrupted
		s.endedLocked(d)
		s.mu.Unlock()
		next = readEnd
	}
	if failed {
		s.stop(EndInterrupted)
	}
	return next
}

// drainLimitLocked decides what copyToClient does when the drain deadline
// on the upstream passed: read on (readAgain), end drained (readEnd), or
// give up reuse (giveUp: the caller passes the client's FIN on and reads
// on). It is called with mu held.
func (s *session) drainLimitLocked() (next readNext, giveUp bool) {
	d := &s.down
	now := time.Since(s.start)
	quietSince := max(s.finAt, d.lastRead)
	owed := s.replyOwed()
	next = readAgain
	switch {
	case owed && now-s.finAt < s.opt.DrainTimeout:
		// Not the drain limit's deadline but an earlier one (a park
		// request's, seen just before the drain began): the drain limit
		// is still set, so read on.
	case owed:
		// A reply is owed and none started within the drain limit. Give
		// up reuse and pass the FIN on, for protocols that wait for it
		// before they answer; the reply then flows as in a plain
		// half-close.
		s.draining = false
		s.uio.SetReadDeadline(time.Time{})
		giveUp = true
	case now-quietSince >= s.opt.DrainTimeout:
		d.res.End = EndDrained
		next = readEnd
	default:
		s.uio.SetReadDeadline(s.start.Add(quietSince + s.opt.DrainTimeout))
	}
	return next, giveUp
}

// parkLocked answers checkPark's deadline on copyToClient: it parks d
// (readParked), unless the session moved on meanwhile (the client's FIN)
// or no epoll is to be had (out of fds, say): then d reads on, and the
// park timer tries again later. It is called with mu held.
func (s *session) parkLocked(d *direction) readNext {
	d.parkReq = false
	s.uio.SetReadDeadline(time.Time{})
	next := readAgain
	switch {
	case s.up.ended:
	case park(d):
		d.parked = true
		next = readParked
	default:
		s.park.Reset(maxParkBackoff)
	}
	return next
}

// endEOF ends d after its source sent FIN, and passes the FIN on (or,
// with Reuse, holds the client's FIN back and starts draining).
func (s *session) endEOF(d *direction) {
	d.res.End = EndEOF
	s.mu.Lock()
	s.setFirstLocked(d.srcSide, EndEOF)
	finUp := true // pass the client's FIN on to the upstream
	if d == &s.up {
		finUp = !s.opt.Reuse || s.eof || s.down.ended
		if !finUp && !s.stopped {
			s.beginDrainLocked()
		}
	} else {
		s.eof = true
		// A held FIN is passed on after all: the upstream is not
		// reusable any more.
		finUp = s.draining
		s.draining = false
	}
	s.endedLocked(d)
	s.mu.Unlock()
	if s.testHook != nil {
		s.testHook(hookEOFHandled, d.srcSide)
	}
	failed := false
	if finUp {
		failed = !s.passFIN(Upstream) && d == &s.up
	}
	if d == &s.down {
		failed = !s.passFIN(Client)
	}
	if failed {
		s.stop(EndInterrupted)
	}
}

// replyOwed reports whether a reply is owed to the client: the last
// write to start was toward the upstream. A write toward the client that
// has started carries the reply even before its seq is stored, as when
// the client read it and sent its FIN before its writer ran again.
func (s *session) replyOwed() bool {
	us := s.up.seq.Load()
	return us > 0 && s.seq.Load() == us
}

// beginDrainLocked holds the client's FIN back and sets the drain limit
// as the upstream's read deadline. It is called with mu held.
func (s *session) beginDrainLocked() {
	now := time.Now()
	s.draining = true
	s.down.parkReq = false // the drain limit replaces its deadline
	s.finAt = now.Sub(s.start)
	if s.opt.DrainOwedOnly && !s.replyOwed() {
		s.opt.DrainTimeout = 0 // the drain ends at once
	}
	s.uio.SetReadDeadline(now.Add(s.opt.DrainTimeout))
}

// passFIN passes a FIN on to side with its conn's CloseWrite, or, for a
// bare TCP or unix socket, with the same shutdown(2) made as a raw call
// (see rawCloseWrite). It reports false if the conn cannot half-close or
// the call failed (an error of the session).
func (s *session) passFIN(to Side) bool {
	c := s.upstream
	if to == Client {
		c = s.client
	}
	var err error
	if !s.rawCloseWrite(to) {
		cw, ok := c.(closeWriter)
		if !ok {
			return false
		}
		err = cw.CloseWrite()
	}
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
// Its callees are kept out of its frame (see the ledger in
// bench/README.md).
func (s *session) finish(r *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.haltLocked()
	s.resultLocked(r)
}

// haltLocked marks the session finished, removes its ctx callback and
// timers and clears the deadlines.
//
//go:noinline
func (s *session) haltLocked() {
	s.finished = true
	if s.stopCtx != nil {
		s.stopCtx()
	}
	if s.idle != nil {
		s.idle.Stop()
	}
	if s.park != nil {
		s.park.Stop()
	}
	clearDeadlines(s.cio, s.client)
	clearDeadlines(s.uio, s.upstream)
}

// resultLocked fills r field by field, without a temporary.
//
//go:noinline
func (s *session) resultLocked(r *Result) {
	s.up.resultTo(&r.Up)
	s.down.resultTo(&r.Down)
	r.First, r.FirstEnd = s.first, s.end
	r.UpstreamEOF = s.eof
	r.UpstreamHalfClosed, r.ClientHalfClosed = s.upHalf, s.cliHalf
	r.Err = s.err
	r.Start, r.Stop = s.start, time.Now()
	r.LastDir, r.LastAt = NoDir, time.Time{}
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
