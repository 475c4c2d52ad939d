package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// -accept-proxy: clients from the listed addresses (load balancers such
// as HAProxy) start with a PROXY protocol header, v1 or v2, which says
// who the real client is. The header is read in listener.Config.Prepare,
// on the session's goroutine (never in Accept, which must not wait on one
// client), exactly to its last byte, so that no client byte is left in a
// user-space buffer and the copy still splices: the socket is peeked
// (MSG_PEEK) until the peeked bytes hold a whole header, the header is
// parsed from them by github.com/pires/go-proxyproto, and then exactly
// its length is read from the socket.

// maxProxyHeader bounds the bytes peeked for a header: a v2 header is 16
// bytes and a length of at most 65535.
const maxProxyHeader = 16 + 65535

// proxyListener wraps the TCP listener with -accept-proxy. Accept wraps a
// conn from a trusted address in a *proxyConn, whose header prepareProxy
// reads; it reads nothing itself.
type proxyListener struct {
	net.Listener
	trusted []netip.Prefix
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok || !l.trusts(c.RemoteAddr()) {
		return c, nil
	}
	return &proxyConn{TCPConn: tc}, nil
}

func (l *proxyListener) trusts(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	return slices.ContainsFunc(l.trusted, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// proxyConn is a client conn from a trusted load balancer. Once its
// header was read, RemoteAddr and LocalAddr report the header's
// addresses (the real client's, and the address it connected to); they
// are atomic, since the status page reads them from other goroutines.
// NetConn returns the socket, so that package splice unwraps it and
// splices.
type proxyConn struct {
	*net.TCPConn
	remote, local atomic.Pointer[net.TCPAddr]
}

func (c *proxyConn) RemoteAddr() net.Addr {
	if a := c.remote.Load(); a != nil {
		return a
	}
	return c.TCPConn.RemoteAddr()
}

func (c *proxyConn) LocalAddr() net.Addr {
	if a := c.local.Load(); a != nil {
		return a
	}
	return c.TCPConn.LocalAddr()
}

// NetConn returns the TCP conn underneath.
func (c *proxyConn) NetConn() net.Conn { return c.TCPConn }

// errUntrusted refuses a client not in -accept-proxy under
// -accept-proxy-others refuse.
var errUntrusted = errors.New("client address not in -accept-proxy (-accept-proxy-others refuse)")

// prepareProxy returns the listener.Config.Prepare of -accept-proxy: for
// a conn from a trusted address, it reads the PROXY header and sets the
// conn's addresses from it; any other conn passes as it is, or, with
// refuse, fails.
func prepareProxy(refuse bool) func(context.Context, net.Conn) error {
	return func(ctx context.Context, c net.Conn) error {
		pc := findProxyConn(c)
		if pc == nil {
			if refuse {
				return errUntrusted
			}
			return nil
		}
		return pc.readHeader(ctx)
	}
}

// findProxyConn unwraps c (a *tls.Conn with -tls-cert) to its
// *proxyConn, or returns nil.
func findProxyConn(c net.Conn) *proxyConn {
	for range 4 {
		switch w := c.(type) {
		case *proxyConn:
			return w
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// readHeader reads the conn's PROXY header, exactly, under ctx, and
// takes its addresses. A header that is not one, or a LOCAL command (a
// load balancer's own health check), or one for an address family other
// than TCP over IPv4 or IPv6 leaves the conn's own addresses.
func (c *proxyConn) readHeader(ctx context.Context) (err error) {
	// ctx's end (its deadline, or Close) cuts the reads with a deadline
	// in the past; a cut that came after the header was read still
	// leaves that deadline, so it fails the call, which closes the conn.
	stop := context.AfterFunc(ctx, func() { c.TCPConn.SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && err == nil {
			err = fmt.Errorf("PROXY header: %w", ctx.Err())
		}
	}()
	n, h, buf, err := peekHeader(c.TCPConn)
	if err != nil {
		return fmt.Errorf("PROXY header: %w", err)
	}
	// The same bytes again, now taken off the socket.
	if _, err := io.ReadFull(c.TCPConn, buf[:n]); err != nil {
		return fmt.Errorf("PROXY header: read: %w", err)
	}
	if h.Command.IsProxy() {
		if src, dst, ok := h.TCPAddrs(); ok {
			c.local.Store(unmapTCP(dst))
			c.remote.Store(unmapTCP(src))
		}
	}
	return nil
}

func unmapTCP(a *net.TCPAddr) *net.TCPAddr {
	ap := a.AddrPort()
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// errNotProxy says the client's first bytes are not a PROXY header.
var errNotProxy = errors.New("not a PROXY protocol header")

// parseHeader parses the header at the start of b. It returns the
// header's length and the header; or 0, need > 0 and no error when b is
// the start of a header that needs more bytes (at least need in all);
// or an error when b cannot start one.
func parseHeader(b []byte) (n int, h *proxyproto.Header, need int, err error) {
	switch {
	case len(b) < len(sigV1) && bytes.HasPrefix(sigV1, b):
		return 0, nil, len(b) + 1, nil
	case len(b) < 16 && bytes.HasPrefix(sigV2, b[:min(len(b), len(sigV2))]):
		return 0, nil, 16, nil
	case bytes.HasPrefix(b, sigV1):
		// At most 107 bytes, "\r\n" included.
		if bytes.IndexByte(b[:min(len(b), 107)], '\n') < 0 {
			if len(b) >= 107 {
				return 0, nil, 0, errors.New("v1 header longer than 107 bytes")
			}
			return 0, nil, len(b) + 1, nil
		}
	case bytes.HasPrefix(b, sigV2):
		if total := 16 + int(binary.BigEndian.Uint16(b[14:16])); len(b) < total {
			return 0, nil, total, nil
		}
	default:
		return 0, nil, 0, errNotProxy
	}
	r := bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16))
	h, err = proxyproto.Read(r)
	if err != nil {
		return 0, nil, 0, err
	}
	return len(b) - r.Buffered(), h, 0, nil
}
