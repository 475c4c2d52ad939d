package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listen is net.Listen with TCP keepalive for the accepted conns set once
// on the listening socket: SO_KEEPALIVE on, TCP_KEEPIDLE and
// TCP_KEEPINTVL keepalive (in whole seconds, rounded up), TCP_KEEPCNT
// clientKeepaliveCount. On Linux a socket returned by accept inherits
// these options from the listening socket, so that is one set of
// setsockopt calls per listener instead of the four that package net
// makes on every accepted conn by default (SO_KEEPALIVE, TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT): ListenConfig.KeepAlive -1 turns those off.
// keepalive 0 leaves keepalive off, which is a new socket's default, and
// makes no call at all.
func listen(ctx context.Context, network, addr string, keepalive time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	if keepalive > 0 {
		lc.Control = keepaliveControl(keepaliveSeconds(keepalive))
	}
	return lc.Listen(ctx, network, addr)
}

// keepaliveControl returns a ListenConfig.Control that turns keepalive
// on for the socket, with secs as idle time and probe interval.
func keepaliveControl(secs int) func(network, address string, c syscall.RawConn) error {
	opts := []struct {
		name       string
		level, opt int
		value      int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, clientKeepaliveCount},
	}
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			for _, o := range opts {
				if err = unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); err != nil {
					err = fmt.Errorf("client keepalive: setsockopt %s %d: %w", o.name, o.value, err)
					return
				}
			}
		}); cerr != nil {
			return cerr
		}
		return err
	}
}

// keepaliveSeconds is d in whole seconds, rounded up as package net
// does, since the kernel takes seconds: 1500ms is 2.
func keepaliveSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
