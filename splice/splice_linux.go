package splice

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSplice is the most splice(2) is asked to move at once; the pipe's
// capacity is the real bound.
const maxSplice = 1 << 20

const spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// spliceState is the kernel side of a direction between two sockets.
type spliceState struct {
	srcRaw, dstRaw syscall.RawConn
	// readFn, bufWriteFn and pipeWriteFn are d.kernelRead, d.bufWrite and
	// d.pipeWrite, bound once so that the RawConn calls do not allocate
	// per chunk.
	readFn, bufWriteFn, pipeWriteFn func(fd uintptr) bool

	p *pipe // nil unless a bulk transfer is under way

	// buf holds bytes read and not yet written, buf[boff:bn]. It is
	// borrowed from smallPool by a read and given back when the source
	// says EAGAIN (or the copy ends): an idle direction holds no buffer.
	buf      *[smallSize]byte
	boff, bn int

	noSplice bool // splice(2) from the source said EINVAL: buffers only

	// Results of the last read callback (eof, rerr) and write callback
	// (werr).
	eof        bool
	rerr, werr error
}

// smallSize is the size of the buffer a direction reads into first. A
// read that fills it switches the direction to splice(2) until the source
// is drained.
const smallSize = 16 << 10

// smallPool holds *[smallSize]byte.
var smallPool = sync.Pool{New: func() any { return new([smallSize]byte) }}

// setupSplice makes both directions of s splice when both conns are
// kernel stream sockets, and points s.cio and s.uio at the sockets.
func setupSplice(s *session) {
	cio, craw, ok := streamSocket(s.client)
	if !ok {
		return
	}
	uio, uraw, ok := streamSocket(s.upstream)
	if !ok {
		return
	}
	s.cio, s.uio = cio, uio
	s.up.sp.init(&s.up, craw, uraw)
	s.down.sp.init(&s.down, uraw, craw)
}

func (sp *spliceState) init(d *direction, src, dst syscall.RawConn) {
	sp.srcRaw, sp.dstRaw = src, dst
	sp.readFn, sp.bufWriteFn, sp.pipeWriteFn = d.kernelRead, d.bufWrite, d.pipeWrite
	d.res.Spliced = true
}

// streamSocket reports whether c, unwrapped, is a kernel stream socket
// that Go's poller waits for, and returns the unwrapped conn and its
// RawConn: a *net.TCPConn or *net.UnixConn (always polled, even if
// O_NONBLOCK was cleared behind its back), or a conn of another kind on
// a non-blocking socket.
func streamSocket(c net.Conn) (net.Conn, syscall.RawConn, bool) {
	c = unwrap(c)
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, nil, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, nil, false
	}
	if _, ok := c.(*net.TCPConn); ok {
		return c, raw, true
	}
	_, isUnix := c.(*net.UnixConn)
	typ, serr, nonblock := -1, error(nil), isUnix
	err = raw.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		if !isUnix && serr == nil {
			// A conn of another kind may sit on a blocking socket, which
			// Go's poller cannot wait for.
			fl, ferr := unix.FcntlInt(fd, unix.F_GETFL, 0)
			nonblock = ferr == nil && fl&unix.O_NONBLOCK != 0
		}
	})
	if err != nil || serr != nil || typ != unix.SOCK_STREAM || !nonblock {
		return nil, nil, false
	}
	return c, raw, true
}

// spliceCopy moves bytes from the source socket to the destination
// socket through Go's poller, so that deadlines work as for Read and
// Write. It alternates one RawConn.Read of the source, whose callback
// reads one chunk (kernelRead), with one RawConn.Write of the
// destination that delivers it. The two are siblings rather than nested
// (a write inside the read callback), to keep the stack shallow (see the
// ledger in bench/README.md).
//
// Each read goes into a small buffer; a read that fills it means a bulk
// transfer, which then moves with splice(2) through a pipe until the
// source has nothing more, and the pipe goes back. Buffer and pipe go
// back when the source says EAGAIN, so an idle direction holds neither.
func (d *direction) spliceCopy() (rerr, werr error) {
	sp := &d.sp
	defer d.releasePipe()
	defer d.releaseBuf()
	for {
		sp.eof, sp.rerr, sp.werr = false, nil, nil
		if err := sp.srcRaw.Read(sp.readFn); err != nil {
			return err, nil
		}
		switch {
		case sp.rerr != nil:
			return sp.rerr, nil
		case sp.eof:
			return nil, nil
		}
		d.delivering.Store(true)
		err := d.kernelWrite()
		d.delivering.Store(false)
		if err != nil {
			return nil, err
		}
	}
}

func (d *direction) releasePipe() {
	if p := d.sp.p; p != nil {
		d.sp.p = nil
		putPipe(p) // closes it if bytes were stranded in it
	}
}

func (d *direction) releaseBuf() {
	if b := d.sp.buf; b != nil {
		d.sp.buf = nil
		smallPool.Put(b)
	}
}

// kernelRead is the source's RawConn.Read callback: it reads one chunk,
// into the pipe in bulk, else into the buffer. It returns true with the
// chunk (sp.p.n or sp.buf[:sp.bn]), at EOF (sp.eof) or on an error
// (sp.rerr). It returns false, to wait, only after the kernel said
// EAGAIN, with no buffer or pipe held: Go's poller is edge-triggered,
// and waiting without that would miss data (or a FIN, or a reset) that is
// already there. A short read is not enough: data and a reset that
// arrived together wake the poller once, and TCP_INQ, which reports a
// pending FIN, does not report a pending reset.
func (d *direction) kernelRead(fd uintptr) bool {
	sp := &d.sp
	for {
		if d.s.halted.Load() {
			// Stopped: the poller reports the deadline at once.
			d.releasePipe()
			d.releaseBuf()
			return false
		}
		if sp.p != nil {
			// Bulk: the pipe is empty here, so EAGAIN means the socket
			// has nothing.
			n, err := unix.Splice(int(fd), nil, sp.p.w, nil, maxSplice, spliceFlags)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				d.releasePipe()
				return false
			case err == unix.EINVAL && d.res.SplicedBytes == 0:
				// This socket cannot splice: stay on buffers.
				sp.noSplice = true
				d.releasePipe()
				continue
			case err != nil:
				sp.rerr = os.NewSyscallError("splice", err)
				return true
			case n == 0:
				sp.eof = true
				return true
			}
			sp.p.n = int(n)
			d.noteRead(int(n))
			return true
		}

		if sp.buf == nil {
			sp.buf = smallPool.Get().(*[smallSize]byte)
		}
		n, err := rawRead(int(fd), sp.buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.releaseBuf()
			return false
		case err != 0:
			d.releaseBuf()
			sp.rerr = os.NewSyscallError("read", err)
			return true
		case n == 0:
			d.releaseBuf()
			sp.eof = true
			return true
		}
		d.noteRead(n)
		sp.boff, sp.bn = 0, n
		if n == smallSize && !sp.noSplice && !nonblocking(fd) {
			sp.noSplice = true // see nonblocking
		}
		return true
	}
}

// nonblocking reports whether the socket fd is in non-blocking mode.
// SPLICE_F_NONBLOCK makes only the pipe's side of splice(2) non-blocking;
// on a socket made blocking behind its conn's back (File().Fd() does
// that), splice(2) would wait in the kernel, where no deadline reaches
// it. So before a direction turns to the pipe, kernelRead and bufWrite
// check both sockets, and a blocking one keeps the direction on buffers,
// whose recv and send never wait. It runs once per bulk transfer, not
// per chunk.
func nonblocking(fd uintptr) bool {
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// kernelWrite delivers the chunk kernelRead read, from the pipe or the
// buffer, waiting for the destination to take it. On failure the bytes
// not delivered are counted as stranded. A read that filled the buffer
// switches the direction to the pipe for what follows.
func (d *direction) kernelWrite() error {
	sp := &d.sp
	d.startWrite()
	if sp.p != nil {
		err := sp.dstRaw.Write(sp.pipeWriteFn)
		if err == nil {
			err = sp.werr
		}
		if err != nil {
			d.noteStranded(sp.p.n)
		}
		return err
	}
	err := sp.dstRaw.Write(sp.bufWriteFn)
	if err == nil {
		err = sp.werr
	}
	if err != nil {
		d.noteStranded(sp.bn - sp.boff)
		return err
	}
	if sp.bn == smallSize && !sp.noSplice {
		// A bulk transfer: splice the rest. Without a pipe (out of
		// fds), go on through the buffer.
		if p, err := getPipe(); err == nil {
			d.releaseBuf()
			sp.p = p
		}
	}
	return nil
}

// bufWrite is the destination's RawConn.Write callback for bytes in
// sp.buf; it waits for writability on EAGAIN.
func (d *direction) bufWrite(fd uintptr) bool {
	sp := &d.sp
	for sp.boff < sp.bn {
		n, err := rawWrite(int(fd), sp.buf[sp.boff:sp.bn])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != 0:
			sp.werr = os.NewSyscallError("write", err)
			return true
		case n <= 0:
			sp.werr = io.ErrNoProgress
			return true
		}
		sp.boff += n
		d.noteWritten(n)
	}
	if sp.bn == smallSize && !sp.noSplice && !nonblocking(fd) {
		sp.noSplice = true // see nonblocking
	}
	return true
}

// pipeWrite is the destination's RawConn.Write callback in bulk: it
// empties the pipe into the socket, and waits for writability on EAGAIN.
func (d *direction) pipeWrite(fd uintptr) bool {
	sp := &d.sp
	for sp.p.n > 0 {
		n, err := unix.Splice(sp.p.r, nil, int(fd), nil, sp.p.n, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			sp.werr = os.NewSyscallError("splice", err)
			return true
		case n == 0:
			sp.werr = io.ErrNoProgress
			return true
		}
		sp.p.n -= int(n)
		d.res.SplicedBytes += int64(n)
		d.noteWritten(int(n))
	}
	return true
}
