package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// tlsDialer returns a pool.Config.Dial that connects to addr and completes
// the TLS handshake under the dial's ctx (which carries -dial-timeout), so
// that a pooled spare is warm in full: TCP and TLS both done before any
// client gets it. cfg should carry a ClientSessionCache, so that redials
// resume the session rather than do a full handshake.
func tlsDialer(addr string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context) (net.Conn, error) {
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return c, nil
	}
}
