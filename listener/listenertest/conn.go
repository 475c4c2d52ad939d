package listenertest

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/relaykit/relay/internal/deadline"
)

// aLongTimeAgo is a deadline in the past: it makes a blocked Read return.
var aLongTimeAgo = time.Unix(1, 0)

// faultListener hands the ProxyListener client conns wrapped in
// clientConns, and resets connections at once while the forwarder is down.
type faultListener struct {
	net.Listener
	f *Forwarder
}

// Accept returns the next connection that becomes a session.
func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s := l.f.admit(c); s != nil {
			return s.c, nil
		}
	}
}

// clientConn is an accepted client conn as the ProxyListener and splice
// see it. Its Read is where Upstream faults act, its Write where
// Downstream faults act. It deliberately exposes neither SyscallConn nor
// NetConn, so that splice copies through Read and Write instead of
// splicing the sockets beneath.
type clientConn struct {
	s     *Session
	inner net.Conn
	addr  *clientAddr

	// rdl and wdl mirror the deadlines set on the conn, for the faults'
	// own waits (a wait ends when its deadline passes, as I/O does).
	rdl, wdl *deadline.Deadline

	// rmu guards kicked and orders changes of inner's read deadline.
	rmu sync.Mutex
	// kicked is set while inner's read deadline is in the past to wake a
	// blocked Read (for Session.CloseWrite(Upstream)); the Read that sees
	// the timeout restores the deadline rdl holds.
	kicked bool
}

// clientAddr is a client's address, tagged with its session so that the
// ProxyListener's reports (SessionInfo, SessionState) can be matched
// back to it. It prints as the address.
type clientAddr struct {
	net.Addr
	s *Session
}

func (c *clientConn) Read(p []byte) (int, error) {
	d := &c.s.dirs[0]
	d.io.Lock()
	defer d.io.Unlock()
	return d.read(p)
}

func (c *clientConn) Write(p []byte) (int, error) {
	d := &c.s.dirs[1]
	d.io.Lock()
	defer d.io.Unlock()
	return d.write(p)
}

// Close closes the conn, after the Downstream SlowClose delay if one
// applies and was not served by CloseWrite already.
func (c *clientConn) Close() error {
	c.s.slowClose()
	return c.s.shut(false)
}

// CloseWrite passes a FIN on to the client, after the Downstream
// SlowClose delay if one applies.
func (c *clientConn) CloseWrite() error {
	c.s.slowCloseWrite()
	cw, ok := c.inner.(closeWriter)
	if !ok {
		return c.opError("close", errors.ErrUnsupported)
	}
	return cw.CloseWrite()
}

func (c *clientConn) LocalAddr() net.Addr  { return c.inner.LocalAddr() }
func (c *clientConn) RemoteAddr() net.Addr { return c.addr }

func (c *clientConn) SetDeadline(t time.Time) error {
	c.wdl.Set(t)
	werr := c.inner.SetWriteDeadline(t)
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return werr
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.kicked {
		return nil // the Read that sees the kick restores t
	}
	return c.inner.SetReadDeadline(t)
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Set(t)
	return c.inner.SetWriteDeadline(t)
}

// kick wakes a Read blocked on inner.
func (c *clientConn) kick() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.kicked = true
	c.inner.SetReadDeadline(aLongTimeAgo)
}

// unkick reports whether err is the timeout that kick caused, and if so
// restores inner's read deadline.
func (c *clientConn) unkick(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !c.kicked {
		return false
	}
	c.kicked = false
	c.inner.SetReadDeadline(c.rdl.Get())
	return true
}

func (c *clientConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.inner.LocalAddr().Network(), Source: c.inner.LocalAddr(), Addr: c.addr, Err: err}
}

// closeWriter is a conn that can send a FIN while it still reads.
type closeWriter interface {
	CloseWrite() error
}

// resetConn closes c with an RST rather than a FIN where the conn allows
// it (SO_LINGER 0).
func resetConn(c net.Conn) error {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	return c.Close()
}

// upstreamConn is a dialed upstream conn. It passes everything through,
// counts the client FINs passed on with CloseWrite, and keeps SyscallConn
// visible so the pool can peek the socket (no NetConn, so splice does not
// look beneath it).
type upstreamConn struct {
	net.Conn
	f *Forwarder
}

// CloseWrite passes a client's FIN on to the upstream.
func (u *upstreamConn) CloseWrite() error {
	cw, ok := u.Conn.(closeWriter)
	if !ok {
		return &net.OpError{Op: "close", Net: u.LocalAddr().Network(), Source: u.LocalAddr(), Addr: u.RemoteAddr(), Err: errors.ErrUnsupported}
	}
	err := cw.CloseWrite()
	if err == nil {
		u.f.note(func(c *Counts) { c.ClientFINs++ })
	}
	return err
}

// SyscallConn returns the raw conn of the socket beneath, for the pool's
// peek.
func (u *upstreamConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := u.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (u *upstreamConn) Close() error {
	u.f.forgetUpstream(u)
	return u.Conn.Close()
}
