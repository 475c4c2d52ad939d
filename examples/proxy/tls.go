package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// tlsDialer returns a balance.Config.Dial that connects to a server's
// address and completes the TLS handshake under the dial's ctx (which
// carries -dial-timeout), so that a pooled spare is warm in full: TCP and
// TLS both done before any client gets it. The certificate is verified for
// cfg.ServerName, or, when that is empty, for the host the server was
// configured by. cfg should carry a ClientSessionCache, so that redials
// resume the session rather than do a full handshake.
func tlsDialer(cfg *tls.Config) func(ctx context.Context, addr, host string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, addr, host string) (net.Conn, error) {
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := cfg
		if tc.ServerName == "" {
			// Each server is verified for the host it was configured by.
			tc = cfg.Clone()
			tc.ServerName = host
		}
		c := tls.Client(raw, tc)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return c, nil
	}
}
