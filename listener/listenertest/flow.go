package listenertest

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/internal/deadline"
)

// dirState is one direction of one session: where its faults act and
// what they remember. Upstream faults act in the client conn's Read
// (before the bytes reach splice), Downstream faults in its Write.
//
// Every wait selects on the conn's deadline for that direction, the
// session's end and the forwarder's stop, and on the fault set's and
// the session's change channels where a change can end it: no lock is
// held while waiting, and none is needed to change a fault.
type dirState struct {
	s   *Session
	idx int                // 0 Upstream, 1 Downstream
	dl  *deadline.Deadline // the conn's read (Upstream) or write (Downstream) deadline

	// bytes counts the bytes passed on: returned by Read (Upstream),
	// written to the client (Downstream). It counts a write before it
	// happens, so it never lags what the peer may have received.
	bytes atomic.Int64

	// io serialises Reads (Upstream) or Writes (Downstream), as a
	// net.Conn does, and guards the fields below. Nothing but the I/O of
	// this direction (and the close paths, once it has returned) takes it.
	io      sync.Mutex
	rng     *rand.Rand
	draws   map[*spec]bool    // per-session draws, and Blackholes that hit
	buckets map[*spec]*bucket // per-session Bandwidth buckets
	armed   map[*spec]bool    // ResetAfter timers started
	nextAt  time.Time         // Slicer: no slice before this
	bhSince time.Time         // when the current Blackhole hold began

	// Upstream only.
	pending   []byte    // read from the client, not yet passed on
	pendBuf   []byte    // pending's storage, reused
	pendingAt time.Time // when pending may go
	pendEnd   endKind   // how the session ends once pending has gone
	endNext   endKind   // end the session at the next Read
	eofAt     time.Time // the client's EOF was read; it passes at this time
	readErr   error     // an error that came with data, for the next Read
}

// endKind is how a fault ends a session.
type endKind uint8

const (
	endNone endKind = iota
	endCut
	endReset
)

// applies draws whether sp acts now (see Fault).
func (d *dirState) applies(sp *spec) bool {
	if sp.p >= 1 {
		return true
	}
	if sp.p <= 0 {
		return false
	}
	sticky := sp.kind == kindBlackhole
	if sp.perSession || sticky {
		if v, ok := d.draws[sp]; ok {
			return v
		}
	}
	v := d.rng.Float64() < sp.p
	if sp.perSession || (sticky && v) {
		if d.draws == nil {
			d.draws = make(map[*spec]bool)
		}
		d.draws[sp] = v
	}
	return v
}

// uniform returns a uniform random value in [-span, +span].
func (d *dirState) uniform(span int64) int64 {
	if span <= 0 {
		return 0
	}
	return d.rng.Int64N(2*span+1) - span
}

// holding reports what holds the direction now: a pause, or a Blackhole
// (nil if none).
func (d *dirState) holding(fs *faultSet) (paused bool, bh *spec, wake <-chan struct{}) {
	s := d.s
	s.mu.Lock()
	paused, wake = s.paused[d.idx], s.wake
	s.mu.Unlock()
	for _, sp := range fs.specs {
		if sp.kind == kindBlackhole && d.applies(sp) {
			bh = sp
			break
		}
	}
	return paused, bh, wake
}

// gate waits while the direction is paused or blackholed, and returns
// the fault set in effect when it may go on.
func (d *dirState) gate(op string) (*faultSet, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		fs := d.s.f.faults[d.idx].Load()
		paused, bh, wake := d.holding(fs)
		if bh == nil {
			d.bhSince = time.Time{}
			if !paused {
				return fs, nil
			}
		}
		var fire <-chan time.Time
		if bh != nil {
			if d.bhSince.IsZero() {
				d.bhSince = time.Now()
			}
			if bh.d > 0 {
				rest := time.Until(d.bhSince.Add(bh.d))
				if rest <= 0 {
					return nil, d.s.end(endCut, op, "Blackhole timeout")
				}
				if timer == nil {
					timer = time.NewTimer(rest)
				} else {
					timer.Reset(rest)
				}
				fire = timer.C
			}
		}
		select {
		case <-wake:
		case <-fs.changed:
		case <-fire:
		case <-d.dl.Wait():
			return nil, d.s.c.opError(op, os.ErrDeadlineExceeded)
		case <-d.s.done:
			return nil, d.s.shutErr(op)
		case <-d.s.f.stop:
			return nil, d.s.c.opError(op, ErrClosed)
		}
	}
}

// sleepUntil waits until t, or fails when the deadline passes, the
// session is shut or the forwarder stops.
func (d *dirState) sleepUntil(op string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	dur := time.Until(t)
	if dur <= 0 {
		return nil
	}
	timer := time.NewTimer(dur)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-d.dl.Wait():
		return d.s.c.opError(op, os.ErrDeadlineExceeded)
	case <-d.s.done:
		return d.s.shutErr(op)
	case <-d.s.f.stop:
		return d.s.c.opError(op, ErrClosed)
	}
}

// plan is what the chunk faults decided for one chunk.
type plan struct {
	delay time.Duration // hold the chunk this long first
	keep  int           // pass this many bytes of it
	end   endKind       // then end the session so (nothing passes if keep is 0)
}

// plan runs the chunk faults on chunk: hooks first, then the rest in the
// order they were set.
func (d *dirState) plan(fs *faultSet, chunk []byte) plan {
	pl := plan{keep: len(chunk)}
	for _, sp := range fs.specs {
		if sp.kind != kindHook || !d.applies(sp) {
			continue
		}
		a := sp.hook(d.s, dirOf(d.idx), chunk)
		switch a.kind {
		case actDelay:
			pl.delay += a.delay
		case actDrop:
			return plan{end: endCut}
		case actReset:
			return plan{end: endReset}
		}
	}
	for _, sp := range fs.specs {
		switch sp.kind {
		case kindLatency:
			if d.applies(sp) {
				pl.delay += max(0, sp.d+time.Duration(d.uniform(int64(sp.d2))))
			}
		case kindLimitData, kindResetAfterBytes:
			if !d.applies(sp) {
				continue
			}
			left := max(0, sp.n-d.bytes.Load())
			if int64(pl.keep) < left {
				continue
			}
			pl.keep = int(left)
			if sp.kind == kindResetAfterBytes {
				pl.end = endReset
			} else if pl.end == endNone {
				pl.end = endCut
			}
		case kindResetAfter:
			if d.armed[sp] || !d.applies(sp) {
				continue
			}
			if d.armed == nil {
				d.armed = make(map[*spec]bool)
			}
			d.armed[sp] = true
			if sp.d == 0 {
				return plan{end: endReset}
			}
			d.s.resetIn(sp.d)
		}
	}
	return pl
}

// pacing is what the Slicer and Bandwidth faults decided for one chunk.
type pacing struct {
	slicers []*spec
	buckets []*bucket
}

func (d *dirState) pacing(fs *faultSet) pacing {
	var pc pacing
	for _, sp := range fs.specs {
		switch sp.kind {
		case kindSlicer:
			if d.applies(sp) {
				pc.slicers = append(pc.slicers, sp)
			}
		case kindBandwidth:
			if !d.applies(sp) {
				continue
			}
			b := sp.shared
			if b == nil {
				b = d.buckets[sp]
				if b == nil {
					b = newBucket(sp.n)
					if d.buckets == nil {
						d.buckets = make(map[*spec]*bucket)
					}
					d.buckets[sp] = b
				}
			}
			pc.buckets = append(pc.buckets, b)
		}
	}
	return pc
}

// piece returns how many of rest bytes to pass as the next piece.
func (d *dirState) piece(pc pacing, rest int) int {
	n := rest
	for _, sp := range pc.slicers {
		n = min(n, int(max(1, sp.n+d.uniform(sp.n2))))
	}
	for _, b := range pc.buckets {
		n = min(n, b.piece)
	}
	return n
}

// take charges n bytes to the buckets and returns how long to wait
// before passing them.
func (pc pacing) take(n int) time.Duration {
	var wait time.Duration
	for _, b := range pc.buckets {
		wait = max(wait, b.take(n))
	}
	return wait
}

// sliceDelay is the delay before the next slice (zero without a Slicer).
func (pc pacing) sliceDelay() time.Duration {
	var d time.Duration
	for _, sp := range pc.slicers {
		d = max(d, sp.d2)
	}
	return d
}

// slowClose draws the SlowClose delay of the direction.
func (d *dirState) slowClose(fs *faultSet) time.Duration {
	var delay time.Duration
	for _, sp := range fs.specs {
		if sp.kind == kindSlowClose && d.applies(sp) {
			delay = max(delay, sp.d)
		}
	}
	return delay
}

// read is the client conn's Read: the Upstream direction. Bytes are read
// from the client only when the direction may go (so a held direction
// leaves them in the kernel, and the client's writes block), at most one
// piece at a time under Slicer and Bandwidth. A chunk whose wait is
// interrupted by the read deadline stays pending, as if still in flight,
// and goes at the next Read.
func (d *dirState) read(p []byte) (int, error) {
	c := d.s.c
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := d.s.shutErrIf("read"); err != nil {
			return 0, err
		}
		if k := d.endNext; k != endNone {
			return 0, d.s.end(k, "read", "limit reached")
		}
		fs, err := d.gate("read")
		if err != nil {
			return 0, err
		}
		if len(d.pending) > 0 {
			if err := d.sleepUntil("read", d.pendingAt); err != nil {
				return 0, err
			}
			n := copy(p, d.pending)
			d.pending = d.pending[n:]
			d.bytes.Add(int64(n))
			if len(d.pending) == 0 {
				d.endNext = d.pendEnd
			}
			return n, nil
		}
		if err := d.readErr; err != nil {
			d.readErr = nil
			return 0, err
		}
		if !d.eofAt.IsZero() {
			if err := d.sleepUntil("read", d.eofAt); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		if d.s.halfUp.Load() {
			return 0, io.EOF
		}
		if err := d.sleepUntil("read", d.nextAt); err != nil {
			return 0, err
		}
		pc := d.pacing(fs)
		n, err := c.inner.Read(p[:d.piece(pc, len(p))])
		if n == 0 {
			switch {
			case err == nil, c.unkick(err):
				continue
			case errors.Is(err, io.EOF):
				d.eofAt = time.Now().Add(d.slowClose(fs))
				continue
			}
			return 0, err
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				d.eofAt = time.Now().Add(d.slowClose(fs))
			} else {
				d.readErr = err
			}
		}
		pl := d.plan(fs, p[:n])
		if pl.keep == 0 {
			return 0, d.s.end(pl.end, "read", "fault")
		}
		chunk := p[:pl.keep]
		ready := time.Now().Add(pl.delay + pc.take(len(chunk)))
		if len(pc.slicers) > 0 {
			d.nextAt = ready.Add(pc.sliceDelay())
		}
		if err := d.sleepUntil("read", ready); err != nil {
			d.stash(chunk, ready, pl.end)
			return 0, err
		}
		if paused, bh, _ := d.holding(d.s.f.faults[d.idx].Load()); paused || bh != nil {
			d.stash(chunk, time.Time{}, pl.end)
			continue
		}
		d.bytes.Add(int64(len(chunk)))
		d.endNext = pl.end
		return len(chunk), nil
	}
}

// stash keeps chunk (which lives in the caller's buffer) as pending.
func (d *dirState) stash(chunk []byte, at time.Time, end endKind) {
	if cap(d.pendBuf) < len(chunk) {
		d.pendBuf = make([]byte, len(chunk))
	}
	d.pending = d.pendBuf[:copy(d.pendBuf[:len(chunk)], chunk)]
	d.pendingAt = at
	d.pendEnd = end
}

// write is the client conn's Write: the Downstream direction. The chunk
// is held (splice does not read the upstream meanwhile, so the upstream's
// writes block once the kernel buffers are full) and written in pieces
// under Slicer and Bandwidth. A wait interrupted by the write deadline
// returns what was written so far, as a real write cut short does.
func (d *dirState) write(p []byte) (int, error) {
	c := d.s.c
	if err := d.s.shutErrIf("write"); err != nil {
		return 0, err
	}
	fs, err := d.gate("write")
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return c.inner.Write(p)
	}
	pc := d.pacing(fs)
	pl := d.plan(fs, p)
	if pl.keep == 0 {
		return 0, d.s.end(pl.end, "write", "fault")
	}
	if err := d.sleepUntil("write", time.Now().Add(pl.delay)); err != nil {
		return 0, err
	}
	q := p[:pl.keep]
	written := 0
	for written < len(q) {
		if written > 0 {
			if _, err := d.gate("write"); err != nil {
				return written, err
			}
		}
		if err := d.sleepUntil("write", d.nextAt); err != nil {
			return written, err
		}
		size := d.piece(pc, len(q)-written)
		if err := d.sleepUntil("write", time.Now().Add(pc.take(size))); err != nil {
			return written, err
		}
		// Count first, so that the count never lags what the client
		// may have read; take back what was not written.
		d.bytes.Add(int64(size))
		n, err := c.inner.Write(q[written : written+size])
		written += n
		if n < size {
			d.bytes.Add(int64(n - size))
		}
		if err != nil {
			return written, err
		}
		if len(pc.slicers) > 0 {
			d.nextAt = time.Now().Add(pc.sliceDelay())
		}
	}
	if pl.end != endNone {
		return written, d.s.end(pl.end, "write", "limit reached")
	}
	return written, nil
}

// bucket is a token bucket that runs into debt: a taker charges what it
// passes and waits until the debt is paid, so concurrent takers share the
// rate, and nothing is held beyond the piece being paced.
type bucket struct {
	rate  float64 // bytes per second
	burst float64
	piece int // largest piece to pass at once

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newBucket(bytesPerSecond int64) *bucket {
	piece := min(max(bytesPerSecond/50, 1), 16<<10)
	return &bucket{rate: float64(bytesPerSecond), burst: float64(piece), piece: int(piece), tokens: float64(piece)}
}

// take charges n bytes and returns how long to wait before passing them.
func (b *bucket) take(n int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
