//go:build !linux

package main

import (
	"context"
	"net"
	"time"
)

// listen is net.Listen with TCP keepalive for the accepted conns: idle
// time and probe interval keepalive (in whole seconds, rounded up), and
// clientKeepaliveCount probes. keepalive 0 turns it off.
//
// Here, unlike on Linux, the options are not known to be inherited from
// the listening socket by the accepted one, so package net sets them on
// every accepted conn, as it does by default, only with these values.
func listen(ctx context.Context, network, addr string, keepalive time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{
		KeepAlive: -1, // with Enable false: off
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   keepalive > 0,
			Idle:     keepalive,
			Interval: keepalive,
			Count:    clientKeepaliveCount,
		},
	}
	return lc.Listen(ctx, network, addr)
}
