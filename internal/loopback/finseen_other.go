//go:build !linux

package loopback

import (
	"net"
	"time"
)

// awaitFINSeen waits a moment: without Linux's TCP_INFO there is no
// telling when the peer has taken the FIN.
func awaitFINSeen(net.Conn, time.Duration) { time.Sleep(10 * time.Millisecond) }
