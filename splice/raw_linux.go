//go:build linux && !386 && !s390x

package splice

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The buffered reads and writes of the copy, and the shutdown(2) that
// passes a FIN on, are raw system calls (syscall.RawSyscall6), which the
// scheduler does not treat as calls that may block. Through the usual
// path (unix.Syscall, syscall.Shutdown) a loopback write or shutdown,
// which spends 20-40 µs in the kernel delivering to the peer, has the
// runtime's monitor hand the thread's processor to another thread, which
// it must wake, and poll every 20 µs for a millisecond after: wake-ups
// that cost more than the calls. The calls never wait for the peer:
// MSG_DONTWAIT makes them non-blocking whatever the socket's own mode
// (File().Fd() can clear O_NONBLOCK on a net.Conn's socket). The price is
// that the processor stays with the call while the kernel runs it, even
// if it preempts the thread there.
//
// Bulk moves (splice(2) through the pipe) keep unix.Syscall: they are
// long, and letting the scheduler run other work meanwhile pays off.
// With raw calls there, 16 streams moved 12-20% fewer bytes per second
// at 4-18% more CPU per byte.
//
// Linux on 386 and s390x has these calls only through socketcall before
// Linux 4.3: it keeps unix.Read, unix.Write and CloseWrite (raw_socketcall_linux.go).

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
