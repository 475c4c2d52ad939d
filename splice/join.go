package splice

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// DefaultDrainTimeout is the drain limit used when Options.DrainTimeout is zero.
const DefaultDrainTimeout = 50 * time.Millisecond

// Options tune one session. The zero value is a plain two-way copy with
// no idle limit and TCP-style half-close.
type Options struct {
	// IdleTimeout ends the session when no byte has moved either way for
	// this long (EndIdle). Zero or negative means no limit. It applies
	// after a FIN either way, and after a failed write, too, so a
	// half-over session cannot hang.
	IdleTimeout time.Duration

	// Reuse says the caller hopes to give the upstream to another client
	// afterwards. The client's FIN is then not passed on at once; see
	// DrainTimeout. When false, FINs are passed on with CloseWrite both
	// ways and the reply keeps flowing until the upstream's own FIN.
	Reuse bool

	// DrainTimeout applies with Reuse after the client's FIN. If the last
	// byte before the FIN moved toward the upstream (a reply is owed) and
	// no reply byte arrives within DrainTimeout, reuse is given up: the FIN
	// is passed on with CloseWrite and the session goes on as a plain
	// half-close. Otherwise the reply is relayed until the upstream has
	// been quiet for DrainTimeout, and the session ends (EndDrained) with
	// the upstream untouched. Zero or negative means DefaultDrainTimeout.
	DrainTimeout time.Duration

	// DrainOwedOnly, with Reuse, ends the session at the client's FIN
	// (EndDrained) when no reply is owed (no byte moved, or the last one
	// moved toward the client), instead of relaying until the upstream has
	// been quiet for DrainTimeout; a reply still owed is drained as above.
	// It is for a caller whose next step reads whatever the upstream sends
	// late anyway, such as a pool whose Reset drains (pool.Reset.Drains):
	// waiting would only keep the upstream, with the departed client's
	// state (a subscription, say), alive for longer.
	DrainOwedOnly bool

	// Progress, when set, counts the bytes delivered each way while the
	// session runs, for a caller that shows live sessions. Nil counts
	// nothing (the Result has the totals at the end).
	Progress *Progress
}

// Progress counts a live session's delivered bytes. Its fields may be
// read with Load from any goroutine while the session runs.
type Progress struct {
	// ToUpstream and ToClient are the bytes delivered to each side so far.
	ToUpstream, ToClient atomic.Int64
}

// Join copies bytes both ways between client and upstream until the
// session ends, and reports how it ended. It runs the client -> upstream
// direction on the calling goroutine and the upstream -> client direction
// on a goroutine of its own, and returns only after both
// have returned: no goroutine, timer or file descriptor of the session
// outlives the call (the pipes it spliced through go back, empty, to a
// pool that all sessions share; see the package documentation).
//
// The session ends when ctx ends (EndCanceled), when nothing moved for
// IdleTimeout (EndIdle), when a read from either side fails, or when both
// directions have ended; a failed write ends its own direction only, and
// the other one delivers what its source still sends. See the package
// documentation for that, FINs and Options.Reuse.
// Join stops a blocked direction with a deadline in the past; it never
// closes either conn, and before it returns it clears the read and write
// deadlines of both conns (any deadline, including one set before the
// call). Reads are interrupted cleanly; a write that had to be cut is
// reported (WriteCut, Stranded), which makes the upstream unclean. A
// deadline Join did not set is not Join's: a timeout from it is a real
// error.
//
// When both conns are kernel stream sockets (*net.TCPConn, *net.UnixConn,
// or a syscall.Conn of a stream socket, possibly behind a wrapper's
// NetConn method; never a *tls.Conn) and the platform is Linux, short
// reads are copied through a small pooled buffer and bulk transfers move
// with splice(2) through a pipe from a shared pool, each held only while
// data flows: an idle session holds neither. Join then reads and writes
// the socket directly: a wrapper that offers NetConn or SyscallConn must
// not transform or buffer the bytes. Otherwise Join copies through pooled
// buffers, using the conns' Read and Write methods.
//
// FINs are passed on with the conns' own CloseWrite method, if they have
// one (a wrapper is not unwrapped for this); for a bare *net.TCPConn or
// *net.UnixConn, Join makes the same shutdown(2) call itself.
//
// The caller keeps ownership of both conns, which must be non-nil and
// distinct, and must not use them until Join returns. That includes
// Close: to end a session early, cancel ctx. (An upstream closed under a
// parked direction, for one, goes unnoticed until the client side moves,
// ctx ends or the idle limit passes.)
func Join(ctx context.Context, client, upstream net.Conn, opt Options) Result {
	var r Result
	JoinTo(ctx, client, upstream, opt, &r)
	return r
}

// JoinTo is Join, writing the Result to *res (which must not be nil)
// instead of returning it. It is for callers that hold many sessions and
// keep res in their per-session state on the heap, off the stack under
// the copy (see the ledger in bench/README.md).
func JoinTo(ctx context.Context, client, upstream net.Conn, opt Options, res *Result) {
	s := newSession(client, upstream, opt)
	s.run(ctx)
	s.finish(res)
}
