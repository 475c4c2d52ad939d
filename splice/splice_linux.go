package splice

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxSplice is the most splice(2) is asked to move at once; the pipe's
// capacity is the real bound.
const maxSplice = 1 << 20

const spliceFlags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// spliceState is a spliced direction's kernel side.
type spliceState struct {
	srcRaw, dstRaw syscall.RawConn
	// readFn and writeFn are d.spliceRead and d.spliceWrite, bound once
	// so that the RawConn calls do not allocate per chunk.
	readFn, writeFn func(fd uintptr) bool

	p    *pipe // nil while the direction waits for its source
	peek byte  // the byte a readiness check peeks into

	// Results of the last callback.
	eof        bool
	rerr, werr error
}

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
	sp.readFn, sp.writeFn = d.spliceRead, d.spliceWrite
	d.res.Spliced = true
}

// streamSocket reports whether c, unwrapped, is a kernel stream socket,
// and returns the unwrapped conn and its RawConn.
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
	typ, serr := -1, error(nil)
	err = raw.Control(func(fd uintptr) {
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	})
	if err != nil || serr != nil || typ != unix.SOCK_STREAM {
		return nil, nil, false
	}
	return c, raw, true
}

// spliceCopy moves bytes src -> pipe -> dst through Go's poller, so that
// deadlines work as for Read and Write.
func (d *direction) spliceCopy() (rerr, werr error) {
	sp := &d.sp
	defer d.releasePipe()
	for {
		sp.eof, sp.rerr, sp.werr = false, nil, nil
		if err := sp.srcRaw.Read(sp.readFn); err != nil {
			return err, nil
		}
		if sp.rerr != nil {
			return sp.rerr, nil
		}
		if sp.eof {
			return nil, nil
		}
		d.startWrite()
		err := sp.dstRaw.Write(sp.writeFn)
		if err == nil {
			err = sp.werr
		}
		if err != nil {
			d.noteStranded(sp.p.n)
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

// spliceRead is the source's RawConn.Read callback. It returns false only
// after the kernel said EAGAIN: Go's poller is edge-triggered, and waiting
// without that would miss data that is already there.
//
// A direction without a pipe first peeks one byte: while the source is
// idle no pipe is taken. With data (or EOF, or an error) waiting, it takes
// a pipe and splices into it; if that finds nothing after all, the pipe
// goes back before the direction waits.
func (d *direction) spliceRead(fd uintptr) bool {
	sp := &d.sp
	if sp.p == nil {
		n, err := peek(int(fd), &sp.peek)
		switch {
		case err == unix.EAGAIN:
			return false
		case err != nil:
			sp.rerr = os.NewSyscallError("recvfrom", err)
			return true
		case n == 0:
			sp.eof = true
			return true
		}
		p, err := getPipe()
		if err != nil {
			sp.rerr = err
			return true
		}
		sp.p = p
	}
	for {
		// The pipe is empty here: EAGAIN means the socket has nothing.
		n, err := unix.Splice(int(fd), nil, sp.p.w, nil, maxSplice, spliceFlags)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.releasePipe()
			return false
		case err == unix.EINVAL && d.res.Read == 0:
			sp.rerr = errNoSplice
			return true
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
}

// spliceWrite is the destination's RawConn.Write callback: it empties the
// pipe into the socket, and waits for writability on EAGAIN.
func (d *direction) spliceWrite(fd uintptr) bool {
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
		d.noteWritten(int(n))
	}
	return true
}

// peek reads one byte of fd without consuming it and without blocking:
// n is 1 with data waiting, 0 at EOF. It passes no address buffer, so
// that a bound unix-socket peer costs no allocation.
func peek(fd int, b *byte) (int, error) {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(b)), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}
