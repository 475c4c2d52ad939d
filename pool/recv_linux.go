//go:build linux && !386 && !s390x

package pool

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvPeek is recv(fd, buf, MSG_PEEK|MSG_DONTWAIT). It calls recvfrom
// with no source address directly, because unix.Recvfrom allocates one.
func recvPeek(fd uintptr, buf []byte) (int, syscall.Errno) {
	r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd,
		uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}
