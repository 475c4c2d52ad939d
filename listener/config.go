package listener

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// Defaults applied for zero Config fields.
const (
	// DefaultGetTimeout bounds how long a session waits for an upstream.
	DefaultGetTimeout = 10 * time.Second
	// DefaultHandshakeTimeout bounds a TLS client's handshake.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultVerifiedDrainTimeout is the drain limit when the pool's
	// Reset drains (pool.Pool.ResetDrains).
	DefaultVerifiedDrainTimeout = 5 * time.Millisecond
	// DefaultSpares is the number of warm spares the pool made by NewAddr keeps.
	DefaultSpares = 4
)

// Config tunes a ProxyListener. The zero value is valid: no session
// limits, a 10 s bound on waiting for an upstream, silent logging.
type Config struct {
	// MaxSessions caps concurrent sessions. When it is reached, Serve stops
	// accepting until a session ends, so the kernel's backlog holds the
	// rest. Zero means no cap.
	MaxSessions int

	// SessionIdleTimeout ends a session when no byte has moved either way
	// for this long (splice.Options.IdleTimeout). Zero means no limit.
	SessionIdleTimeout time.Duration

	// DrainTimeout is the drain limit used when the pool may reuse the
	// upstream (splice.Options.DrainTimeout): after the client's FIN, a
	// reply still owed is relayed until the upstream has been quiet this
	// long. Zero means DefaultVerifiedDrainTimeout when the pool's Reset
	// drains (pool.Pool.ResetDrains: it reads whatever is sent late, so a
	// long quiet wait only keeps the upstream from the next client), else
	// splice.DefaultDrainTimeout. With such a Reset, a session whose client
	// sent its FIN with no reply owed ends at once, without this wait
	// (splice.Options.DrainOwedOnly), so that the Reset runs as soon as
	// the client is gone.
	DrainTimeout time.Duration

	// GetTimeout bounds the wait for an upstream connection (a dial or a
	// free slot under the pool's MaxOpen; with a balance.Set, every dial
	// tried, one per server, and a wait under its MaxSessions). When it
	// passes, the client is closed. Zero means DefaultGetTimeout.
	GetTimeout time.Duration

	// HandshakeTimeout bounds the TLS handshake of a client accepted from a
	// TLS listener (a conn with a HandshakeContext method, such as
	// *tls.Conn). The handshake runs before an upstream is taken, so a
	// client that never finishes it holds no upstream. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// Logger receives one record per failed session (Warn), per ended
	// session (Debug) and per accept error (Error). Nil means silent.
	Logger *slog.Logger

	// Prepare, when set, runs first for each client, on its session's
	// goroutine, before the TLS handshake (if any), the access rules and
	// the peek, under HandshakeTimeout and Close: ctx ends with either.
	// It is where a client's first bytes that are not its stream are
	// read, such as the PROXY protocol header of a load balancer in front
	// (the bundled proxy's -accept-proxy does that, and its conn then
	// reports the header's addresses). An error closes the client as a
	// *HandshakeError before any upstream is taken.
	Prepare func(ctx context.Context, c net.Conn) error

	// Routes send TLS clients by the server name of their ClientHello
	// (SNI) to an Upstream of their own, without terminating TLS (see
	// Route). A client with no name, a name no route has, or no TLS goes
	// to the Upstream given to New; when that is nil, it is closed and
	// counted (RefusedNoRoute). With Routes, each client's first bytes are
	// peeked (until a whole ClientHello or PeekTimeout) before an upstream
	// is taken, so a protocol whose server speaks first waits PeekTimeout
	// before it reaches the default Upstream. A session whose bytes were
	// peeked is never reused: its upstream is closed after it. Routes are
	// for a listener that does not terminate TLS: behind a TLS listener
	// the peek would read the decrypted stream, and every client would go
	// to the default.
	Routes []Route
	// PeekTimeout bounds the peek at a client's ClientHello with Routes.
	// A client that sent nothing by then goes to the default Upstream; one
	// that sent part of a ClientHello is closed. Zero means
	// DefaultPeekTimeout.
	PeekTimeout time.Duration

	// Access says which client addresses may connect, checked before an
	// upstream is taken (and before a peek). The zero value lets everyone
	// in.
	Access Access
	// MaxSessionsPerIP caps the live sessions of one client address; a
	// client past it is closed at once (RefusedPerIP). Zero means no cap.
	// A session counts from when it passed Prepare and the TLS handshake
	// (the address is known only then), so clients still in those are
	// bounded by HandshakeTimeout and MaxSessions instead.
	MaxSessionsPerIP int

	// SendProxy writes a PROXY protocol header (v1 or v2) to each upstream
	// connection when it is handed to a client, before any client byte,
	// with the client's address and the address it connected to (as the
	// client conn's RemoteAddr and LocalAddr report them: behind a PROXY
	// protocol listener, the addresses its header carried). Such a
	// connection belongs to its client and is closed after the session;
	// New refuses SendProxy with an Upstream whose policy reuses
	// connections. Warm spares still work: no header is written before
	// the hand-out.
	SendProxy ProxyHeader

	// OnSessionEnd, when set, is called once per accepted connection after
	// its upstream was released (or after getting one failed), on the
	// session's goroutine. It must not block for long: shutdown waits for it.
	// A client that may still have been sending is then in its lingering
	// close (PhaseLinger): it has had its FIN and is closed within
	// LingerTimeout.
	OnSessionEnd func(SessionInfo)
}

func (c *Config) validate() error {
	switch {
	case c.MaxSessions < 0:
		return fmt.Errorf("listener: Config.MaxSessions: must not be negative, got %d", c.MaxSessions)
	case c.SessionIdleTimeout < 0:
		return fmt.Errorf("listener: Config.SessionIdleTimeout: must not be negative, got %v", c.SessionIdleTimeout)
	case c.DrainTimeout < 0:
		return fmt.Errorf("listener: Config.DrainTimeout: must not be negative, got %v", c.DrainTimeout)
	case c.GetTimeout < 0:
		return fmt.Errorf("listener: Config.GetTimeout: must not be negative, got %v", c.GetTimeout)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("listener: Config.HandshakeTimeout: must not be negative, got %v", c.HandshakeTimeout)
	case c.PeekTimeout < 0:
		return fmt.Errorf("listener: Config.PeekTimeout: must not be negative, got %v", c.PeekTimeout)
	case c.MaxSessionsPerIP < 0:
		return fmt.Errorf("listener: Config.MaxSessionsPerIP: must not be negative, got %d", c.MaxSessionsPerIP)
	case c.SendProxy > ProxyV2:
		return fmt.Errorf("listener: Config.SendProxy: unknown version %d", uint8(c.SendProxy))
	}
	return c.Access.validate()
}

func (c *Config) peekTimeout() time.Duration {
	if c.PeekTimeout > 0 {
		return c.PeekTimeout
	}
	return DefaultPeekTimeout
}

func (c *Config) getTimeout() time.Duration {
	if c.GetTimeout > 0 {
		return c.GetTimeout
	}
	return DefaultGetTimeout
}

func (c *Config) drainTimeout(resetDrains bool) time.Duration {
	switch {
	case c.DrainTimeout > 0:
		return c.DrainTimeout
	case resetDrains:
		return DefaultVerifiedDrainTimeout
	}
	return splice.DefaultDrainTimeout
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// SessionInfo describes one ended session. It is passed to
// Config.OnSessionEnd.
type SessionInfo struct {
	// ID numbers sessions from 1 in the order they were accepted.
	ID uint64
	// ClientAddr is the client's address; UpstreamAddr the upstream
	// connection's remote address (nil when none was obtained).
	ClientAddr, UpstreamAddr net.Addr
	// Start is when the connection was accepted; Duration how long the
	// session lasted until its upstream was released.
	Start    time.Time
	Duration time.Duration
	// Result is the copy's report: bytes each way, how it ended, the last
	// direction. Zero when no upstream was obtained.
	Result splice.Result
	// Source says where the upstream came from (a spare, a reused conn or
	// a new dial); Outcome what the pool did with it at release.
	Source  pool.Source
	Outcome pool.Outcome
	// Err is why the session failed: the error from getting an upstream
	// (wrapped in *UpstreamError), or the copy's first real error.
	Err error
}

// HandshakeError reports that a client accepted from a TLS listener did
// not complete its handshake, or that Config.Prepare failed; it was
// closed before any upstream was taken.
type HandshakeError struct {
	// Err is the handshake's error (context.DeadlineExceeded after
	// HandshakeTimeout).
	Err error
}

// Error returns "listener: client handshake: " and the cause.
func (e *HandshakeError) Error() string { return "listener: client handshake: " + e.Err.Error() }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *HandshakeError) Unwrap() error { return e.Err }

// PeekError reports that a client's first bytes, peeked for its
// ClientHello's server name (Config.Routes), could not be read: it sent
// part of one and stalled past PeekTimeout, it sent more than fits, or
// its connection failed.
type PeekError struct {
	// Err is the cause: a read error, os.ErrDeadlineExceeded after
	// PeekTimeout, a ClientHello past the size limit, or ErrClosed.
	Err error
}

// Error returns "listener: peek at ClientHello: " and the cause.
func (e *PeekError) Error() string { return "listener: peek at ClientHello: " + e.Err.Error() }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *PeekError) Unwrap() error { return e.Err }

// UpstreamError reports that no upstream connection could be had for a
// client, which was then closed.
type UpstreamError struct {
	// Err is the Upstream's error: a dial error, context.DeadlineExceeded
	// after GetTimeout, pool.ErrClosed, or, from a balance.Set,
	// balance.ErrNoServer (no healthy server was left to try).
	Err error
}

// Error returns "listener: get upstream: " and the cause.
func (e *UpstreamError) Error() string { return "listener: get upstream: " + e.Err.Error() }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *UpstreamError) Unwrap() error { return e.Err }

// ErrClosed is returned by Serve after Shutdown or Close. It matches
// net.ErrClosed with errors.Is.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string        { return "listener: closed" }
func (closedError) Is(target error) bool { return target == net.ErrClosed }
