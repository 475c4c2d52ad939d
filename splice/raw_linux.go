//go:build linux && !386 && !s390x

package splice

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The copy's small reads and writes, and its shutdown, are raw calls;
// bulk moves (splice(2) through the pipe) keep unix.Syscall (see the
// ledger in bench/README.md). MSG_DONTWAIT keeps the raw calls from
// waiting even on a socket whose O_NONBLOCK was cleared behind its conn's
// back (File().Fd() does that).
//
// Linux on 386 and s390x reaches recv, send and shutdown only through
// socketcall before Linux 4.3: raw_socketcall_linux.go keeps unix.Read,
// unix.Write and CloseWrite there.

// rawRead is recv(fd, p, MSG_DONTWAIT); p is not empty.
func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT, 0, 0)
	return int(r), e
}

// rawWrite is send(fd, p, MSG_DONTWAIT|MSG_NOSIGNAL); p is not empty.
func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	return int(r), e
}

// rawCloseWrite passes a FIN on to side when its conn, as given, is the
// very socket the copy moves bytes on: a *net.TCPConn or *net.UnixConn,
// not a wrapper, whose CloseWrite would make the same shutdown(2) call
// through syscall.Shutdown. It reports false when it did not apply or
// the call failed: CloseWrite then runs, and reports the error as usual.
func (s *session) rawCloseWrite(to Side) bool {
	c, raw := s.client, s.up.sp.srcRaw
	if to == Upstream {
		c, raw = s.upstream, s.down.sp.srcRaw
	}
	if raw == nil {
		return false
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return false
	}
	var errno syscall.Errno
	err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
	})
	return err == nil && errno == 0
}
