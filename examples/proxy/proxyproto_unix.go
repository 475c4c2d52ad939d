//go:build unix

package main

import (
	"errors"
	"io"
	"net"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// acceptProxySupported: -accept-proxy works here.
const acceptProxySupported = true

// peekHeader peeks at c (recv with MSG_PEEK, which leaves the bytes in
// the socket) until the bytes there parse as a whole PROXY header, and
// returns its length and the buffer it peeked into (at least that long,
// for the caller to read the header into). It waits for readability through the runtime's
// poller (edge-triggered: a wait after a peek that found too few bytes
// returns when more arrive), within c's read deadline.
func peekHeader(c *net.TCPConn) (int, *proxyproto.Header, []byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, nil, nil, err
	}
	buf := make([]byte, 256) // v1 is at most 107 bytes; v2 with IPv6 52
	var (
		n    int
		h    *proxyproto.Header
		ferr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			got, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // wait for bytes
			case err != nil:
				ferr = err
				return true
			case got == 0:
				ferr = io.ErrUnexpectedEOF
				return true
			}
			var need int
			n, h, need, ferr = parseHeader(buf[:got])
			switch {
			case ferr != nil || n > 0:
				return true
			case need > maxProxyHeader:
				ferr = errors.New("header too long")
				return true
			case need > len(buf) && got == len(buf):
				buf = append(buf, make([]byte, need-len(buf))...)
				continue // peek again, into the larger buffer
			}
			return false // a partial header: wait for more bytes
		}
	})
	if err == nil {
		err = ferr
	}
	return n, h, buf, err
}
