//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pool

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// canPeek reports whether this platform has a socket peek.
const canPeek = true

// peeker looks for pending bytes, EOF or errors on a socket without
// consuming anything and without blocking: recv(MSG_PEEK|MSG_DONTWAIT)
// through syscall.RawConn. The callback and the buffer are made once per
// connection, so a peek allocates nothing (on Linux; see recvPeek).
type peeker struct {
	raw   syscall.RawConn // nil: cannot peek
	fn    func(fd uintptr) bool
	buf   [1]byte
	n     int
	errno syscall.Errno
}

func (pk *peeker) init(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	pk.raw = raw
	pk.fn = func(fd uintptr) bool {
		for {
			n, errno := recvPeek(fd, pk.buf[:])
			if errno == unix.EINTR {
				continue
			}
			pk.n, pk.errno = n, errno
			// Always done: never wait for readiness.
			return true
		}
	}
}

// peek reports what is pending on the socket. The conn's read deadline
// must be clear (RawConn.Read fails on an expired one) and no one may be
// reading it.
func (pk *peeker) peek() peekResult {
	if pk.raw == nil {
		return peekUnknown
	}
	if err := pk.raw.Read(pk.fn); err != nil {
		return peekDead // closed, or unusable
	}
	switch {
	case pk.errno == unix.EAGAIN || pk.errno == unix.EWOULDBLOCK:
		return peekEmpty
	case pk.errno != 0:
		return peekDead // ECONNRESET and friends
	case pk.n > 0:
		return peekData
	default:
		return peekDead // EOF
	}
}
