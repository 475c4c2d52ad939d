package splice

import (
	"fmt"
	"time"
)

// Side names one end of a session.
type Side uint8

const (
	// NoSide means neither side: nothing has ended yet.
	NoSide Side = iota
	// Client is the accepted connection.
	Client
	// Upstream is the connection to the server.
	Upstream
)

// String returns "client", "upstream" or "none".
func (s Side) String() string {
	switch s {
	case Client:
		return "client"
	case Upstream:
		return "upstream"
	default:
		return "none"
	}
}

// Dir names a direction of the copy.
type Dir uint8

const (
	// NoDir means no byte moved.
	NoDir Dir = iota
	// ToUpstream is the direction client -> upstream (requests).
	ToUpstream
	// ToClient is the direction upstream -> client (replies).
	ToClient
)

// String returns "to-upstream", "to-client" or "none".
func (d Dir) String() string {
	switch d {
	case ToUpstream:
		return "to-upstream"
	case ToClient:
		return "to-client"
	default:
		return "none"
	}
}

// End says how a session, or one direction of it, ended.
type End uint8

const (
	// EndNone: not ended (the zero value).
	EndNone End = iota
	// EndEOF: the source sent FIN (a clean end of its stream).
	EndEOF
	// EndError: a real error on a read or a write, not caused by Join.
	EndError
	// EndIdle: no byte moved either way for Options.IdleTimeout.
	EndIdle
	// EndCanceled: the caller's context ended.
	EndCanceled
	// EndInterrupted: Join ended this direction because the other one
	// ended and the session could not go on: its read failed, or its FIN
	// could not be passed on (the conn has no CloseWrite). A failed write
	// interrupts nothing: the other direction runs on.
	EndInterrupted
	// EndDrained: with Options.Reuse, the client sent FIN, its reply was
	// relayed, and the upstream then stayed quiet for Options.DrainTimeout.
	EndDrained
)

// String returns the end's name in lower case, e.g. "eof".
func (e End) String() string {
	switch e {
	case EndEOF:
		return "eof"
	case EndError:
		return "error"
	case EndIdle:
		return "idle"
	case EndCanceled:
		return "canceled"
	case EndInterrupted:
		return "interrupted"
	case EndDrained:
		return "drained"
	default:
		return "none"
	}
}

// DirResult reports one direction of a session.
type DirResult struct {
	// Read is the number of bytes taken from the source.
	Read int64
	// Written is the number of bytes delivered to the destination.
	Written int64
	// Stranded is the number of bytes that were read from the source but
	// could not be delivered (the write failed or was cut). They are lost;
	// a non-zero value makes the session dirty.
	Stranded int64
	// WriteCut reports that a write to the destination was interrupted
	// part-way (by a deadline or an error), leaving the destination
	// mid-message.
	WriteCut bool
	// Spliced reports that this direction ran on the kernel-socket path:
	// both conns are kernel stream sockets and the direction moved bytes
	// between them with its own syscalls, a short read through a small
	// buffer held only while it is written, bulk with splice(2) through a
	// pipe (SplicedBytes). False means the user-space copy through the
	// conns' Read and Write methods with a pooled buffer.
	Spliced bool
	// SplicedBytes is the number of bytes delivered by splice(2), without
	// passing through user space (at most Written). Short messages are
	// copied through a buffer instead.
	SplicedBytes int64
	// End says how this direction ended.
	End End
	// Err is the error that ended this direction, if it was a real one
	// (never our own interrupt and never io.EOF).
	Err error
	// Last is when this direction last delivered a byte (zero if never).
	Last time.Time
}

// Result reports how a session ended. It is a plain value: callers (the
// listener) turn it into a verdict on the upstream connection.
type Result struct {
	// Up is the client -> upstream direction; Down is upstream -> client.
	Up, Down DirResult

	// First is the side whose stream ended first, and FirstEnd how; for
	// EndIdle and EndCanceled, First is NoSide.
	First    Side
	FirstEnd End

	// UpstreamEOF reports that the upstream sent FIN.
	UpstreamEOF bool
	// UpstreamHalfClosed reports that Join passed the client's FIN on with
	// CloseWrite: the upstream has lost its write half and cannot serve
	// another client.
	UpstreamHalfClosed bool
	// ClientHalfClosed reports that Join passed the upstream's FIN on to
	// the client with CloseWrite.
	ClientHalfClosed bool

	// LastDir is the direction that moved the last byte (NoDir if none),
	// LastAt when. Writes are ordered by when they started, so that a
	// reply always counts as later than the request that caused it, even
	// when the request's writer notes its write only after the reply
	// went through.
	LastDir Dir
	LastAt  time.Time

	// Err is the first real error of the session (nil if none), wrapped
	// with which side and operation it came from. Our own interrupts,
	// io.EOF and the idle and drain limits are not errors.
	Err error

	// Start and Stop bound the session.
	Start, Stop time.Time
}

// Bytes returns the bytes delivered each way.
func (r Result) Bytes() (toUpstream, toClient int64) {
	return r.Up.Written, r.Down.Written
}

// Used reports whether the session touched the upstream: a byte was read
// from either side, or a FIN was passed on either way. An untouched
// upstream is as good as a fresh one.
func (r Result) Used() bool {
	return r.Up.Read > 0 || r.Down.Read > 0 || r.UpstreamHalfClosed || r.ClientHalfClosed || r.UpstreamEOF
}

// UpstreamClean reports whether the session left the upstream connection
// in a state where another client may be given it: no real error, the
// upstream did not send FIN and was not half-closed, no write was cut
// part-way, no byte was stranded either way, neither the session nor its
// reply direction was ended by the idle limit or the caller's context
// (either can cut a reply in the middle), and the last byte moved toward
// the client (when it moved toward the upstream, a reply may still be
// owed). A session that moved no byte at all is clean when the other
// conditions hold.
//
// Clean is necessary, not sufficient: a reply can still be in flight. The
// pool checks again (a peek after a quiet period, and an optional Reset).
func (r Result) UpstreamClean() bool {
	if r.Err != nil || r.UpstreamEOF || r.UpstreamHalfClosed {
		return false
	}
	if r.FirstEnd == EndIdle || r.FirstEnd == EndCanceled {
		return false
	}
	// The same for a drain the idle limit or ctx cut after the client's
	// FIN (FirstEnd is then the FIN).
	if r.Down.End == EndIdle || r.Down.End == EndCanceled {
		return false
	}
	if r.Up.WriteCut || r.Down.WriteCut || r.Up.Stranded != 0 || r.Down.Stranded != 0 {
		return false
	}
	return r.LastDir != ToUpstream
}

// Duration returns how long the session lasted.
func (r Result) Duration() time.Duration { return r.Stop.Sub(r.Start) }

// String summarises the result for logs.
func (r Result) String() string {
	return fmt.Sprintf("up=%d down=%d first=%s/%s last=%s clean=%t err=%v",
		r.Up.Written, r.Down.Written, r.First, r.FirstEnd, r.LastDir, r.UpstreamClean(), r.Err)
}
