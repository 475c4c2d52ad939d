package loopback

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// awaitFINSeen waits, for at most limit, until the peer of c, whose write
// half c has shut, has taken c's FIN: c's socket leaves FIN_WAIT1 when
// the peer's kernel acknowledges the FIN, which it does as it queues it
// for its reader.
func awaitFINSeen(c net.Conn, limit time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		state := uint8(unix.BPF_TCP_FIN_WAIT1)
		rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				state = info.State
			}
		})
		if state != unix.BPF_TCP_FIN_WAIT1 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
