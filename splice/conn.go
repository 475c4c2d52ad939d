package splice

import (
	"crypto/tls"
	"net"
)

// netConner is a wrapper that exposes the conn it wraps.
type netConner interface {
	NetConn() net.Conn
}

// handshaker marks TLS conns and look-alikes (types embedding *tls.Conn,
// other TLS libraries): their NetConn carries ciphertext.
type handshaker interface {
	Handshake() error
}

// unwrap follows NetConn through transparent wrappers to the conn that
// does the I/O. It never unwraps a *tls.Conn, nor anything else with a
// Handshake method: reading its inner conn would bypass the encryption.
func unwrap(c net.Conn) net.Conn {
	for range 8 {
		if _, ok := c.(*tls.Conn); ok {
			return c
		}
		if _, ok := c.(handshaker); ok {
			return c
		}
		w, ok := c.(netConner)
		if !ok {
			return c
		}
		inner := w.NetConn()
		if inner == nil {
			return c
		}
		c = inner
	}
	return c
}
