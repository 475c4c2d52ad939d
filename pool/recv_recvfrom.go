//go:build darwin || freebsd || netbsd || openbsd || dragonfly || (linux && (386 || s390x))

package pool

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// recvPeek is recv(fd, buf, MSG_PEEK|MSG_DONTWAIT), through unix.Recvfrom
// (which allocates a source address: about 100 bytes per peek). Linux
// on 386 and s390x goes through socketcall here: a direct recvfrom
// system call needs Linux 4.3 there.
func recvPeek(fd uintptr, buf []byte) (int, syscall.Errno) {
	n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return 0, errno
		}
		return 0, unix.EIO
	}
	return n, 0
}
