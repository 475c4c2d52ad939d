//go:build linux && (386 || s390x)

package splice

import "golang.org/x/sys/unix"

// Linux on 386 and s390x reaches recv, send and shutdown through
// socketcall before Linux 4.3, so the copy keeps the usual calls here
// (see raw_linux.go).

func rawRead(fd int, p []byte) (int, unix.Errno) {
	n, err := unix.Read(fd, p)
	return n, errnoOf(err)
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	n, err := unix.Write(fd, p)
	return n, errnoOf(err)
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EIO
}

// rawCloseWrite never applies here: CloseWrite passes the FIN on.
func (s *session) rawCloseWrite(Side) bool { return false }
