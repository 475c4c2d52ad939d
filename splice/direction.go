package splice

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// direction is one direction of a session: it reads src and writes dst.
type direction struct {
	s                *session
	srcSide, dstSide Side
	src, dst         net.Conn

	// res is owned by the direction's goroutine until Join has waited for
	// it. lastRead and lastWrite (since s.start) likewise.
	res                 DirResult
	lastRead, lastWrite time.Duration

	// ended is guarded by s.mu, as are the parking fields: parkReq (a
	// read deadline in the past asks the direction to park), parked (its
	// goroutine returned; see park) and parkID (its registration).
	ended   bool
	parkReq bool
	parked  bool
	// delivering is set while a spliced direction writes a chunk, which
	// can take long when the destination reads slowly: the direction is
	// then busy, not idle, and the park timer leaves it alone. It sits in
	// the bools' word (session size: see the ledger in bench/README.md).
	delivering atomic.Bool
	parkID     uint64

	// act is the time (since s.start) of the last byte read or written,
	// for the idle and park timers.
	act atomic.Int64
	// seq is the ticket of this direction's last write that delivered a
	// byte (0 if none): the direction with the larger seq moved the last
	// byte. The ticket (from s.seq) is taken before the write starts:
	// the peer may see the bytes, answer, and the answer be relayed before
	// the writing goroutine runs again, and a reply must still count as
	// later than the request that caused it.
	seq    atomic.Uint64
	ticket uint64

	sp spliceState
}

// run copies until d ends, then hands the end to the session. It
// reports true instead when d parked: its goroutine is to return without
// ending d, and a new one resumes it (see park).
func (d *direction) run() (parked bool) {
	for {
		rerr, werr := d.copy()
		switch {
		case werr != nil:
			d.s.endWrite(d, werr)
			return false
		case rerr == nil:
			d.s.endEOF(d)
			return false
		}
		switch d.s.endRead(d, rerr) {
		case readEnd:
			return false
		case readParked:
			return true
		}
	}
}

// copy moves bytes until the source's EOF (nil, nil), a read error
// (rerr) or a write error (werr; the bytes not delivered are counted as
// stranded).
func (d *direction) copy() (rerr, werr error) {
	if d.res.Spliced {
		return d.spliceCopy()
	}
	return d.bufferCopy()
}

func (d *direction) noteRead(n int) {
	now := time.Since(d.s.start)
	d.res.Read += int64(n)
	d.lastRead = now
	d.act.Store(int64(now))
}

func (d *direction) noteWritten(n int) {
	now := time.Since(d.s.start)
	d.res.Written += int64(n)
	if p := d.s.opt.Progress; p != nil {
		if d.dstSide == Upstream {
			p.ToUpstream.Add(int64(n))
		} else {
			p.ToClient.Add(int64(n))
		}
	}
	d.lastWrite = now
	d.act.Store(int64(now))
	d.seq.Store(d.ticket)
}

// startWrite takes the ticket for the write about to start.
func (d *direction) startWrite() {
	d.ticket = d.s.seq.Add(1)
}

// noteStranded counts bytes read but not delivered.
func (d *direction) noteStranded(n int) {
	d.res.Stranded += int64(n)
	d.res.WriteCut = true
}

// resultTo writes d's report to r, to be called after d returned.
func (d *direction) resultTo(r *DirResult) {
	*r = d.res
	if r.Written > 0 {
		r.Last = d.s.start.Add(d.lastWrite)
	}
}

// bufSize is the size of the fallback copy's buffers.
const bufSize = 32 << 10

// bufPool holds *[bufSize]byte: a pointer, so Put does not allocate.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// bufferCopy is the user-space copy: Read and Write through a pooled
// buffer. It never uses io.Copy, which would hide the counts (and splice
// through pipes of its own).
func (d *direction) bufferCopy() (rerr, werr error) {
	buf := bufPool.Get().(*[bufSize]byte)
	defer bufPool.Put(buf)
	for {
		n, err := d.src.Read(buf[:])
		if n > 0 {
			d.noteRead(n)
			if werr := d.writeAll(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			return err, nil
		}
	}
}

func (d *direction) writeAll(b []byte) error {
	d.startWrite()
	for len(b) > 0 {
		n, err := d.dst.Write(b)
		if n > 0 {
			d.noteWritten(n)
			b = b[n:]
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			d.noteStranded(len(b))
			return err
		}
	}
	return nil
}
