//go:build unix

package balance

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// blackhole returns the address of a listener whose accept queue is
// full: a SYN to it goes unanswered, so a dial hangs until its timeout.
func blackhole(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	// Linux takes a second listen(2) as a new backlog: 0 queues one conn.
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil || lerr != nil {
		tb.Skipf("cannot shrink the backlog: %v %v", err, lerr)
	}
	for i := 0; ; i++ {
		if i == 64 {
			tb.Skip("the accept queue never filled")
		}
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return ln.Addr().String()
			}
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
	}
}
