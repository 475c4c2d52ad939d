// Package splice copies the bytes of one proxied session both ways between
// a client conn and an upstream conn, stops cleanly when asked, and reports
// how the session ended, so that the caller can tell whether the upstream
// may serve another client. It knows nothing of pools or listeners.
//
// # Usage
//
//	res := splice.Join(ctx, client, upstream, splice.Options{
//		IdleTimeout: 5 * time.Minute,
//		Reuse:       true,
//	})
//	client.Close()
//	if res.Err != nil {
//		log.Printf("session: %v", res.Err)
//	}
//	if res.UpstreamClean() {
//		// The upstream may go back to the pool (which checks it again).
//	} else {
//		upstream.Close()
//	}
//
// Join never closes either conn and leaves no deadline set on them.
//
// # How bytes move
//
// When both conns are kernel stream sockets on Linux, each direction moves
// bytes between them with its own syscalls: it reads into a 16 KiB buffer
// borrowed from a shared pool and writes those bytes out, and after a read
// that fills the buffer (a bulk transfer) it moves the rest with splice(2)
// through a 1 MiB pipe from a shared pool, until the source has nothing
// more to read. Buffer and pipe go back (the pipe empty) before the
// direction waits again: an idle session holds no buffer, no pipe and no
// file descriptor beyond its two sockets. The pool keeps at most 32 idle
// pipes (64 fds). Everything else (TLS, net.Pipe, other platforms) is
// copied through 32 KiB pooled buffers, with the conns' Read and Write.
//
// The buffered reads and writes between sockets, and the shutdown(2) that
// passes a FIN on, are raw system calls that never wait for the peer
// (MSG_DONTWAIT; see the ledger in bench/README.md). A conn of a kind
// other than *net.TCPConn and *net.UnixConn is copied this way only if its
// socket is non-blocking.
//
// An idle spliced session also gives back a goroutine. Join's caller runs
// the client -> upstream direction and waits on the client; the other
// direction waits on the upstream on a goroutine of its own, but once the
// upstream has sent nothing for 20ms that goroutine parks: the upstream
// socket is registered for one readiness event in an epoll instance that
// the package shares, and the goroutine returns. Data, a FIN or a reset
// from the upstream starts a new one, as do a stop and the end of the
// other direction. The package holds one goroutine and one epoll fd while
// any session is parked (see the ledger in bench/README.md).
//
// # Ending, half-close and reuse
//
// A session ends when the caller's context ends (EndCanceled), when no byte
// moved either way for Options.IdleTimeout (EndIdle), when a read fails
// (EndError; the other direction is interrupted), or when both directions
// have ended. To stop a blocked direction, Join sets a deadline in the
// past on both conns; a read stopped that way is harmless, but a write cut
// part-way leaves the destination mid-message and is reported
// (DirResult.WriteCut, DirResult.Stranded).
//
// A failed write ends its own direction only (EndError). The bytes of its
// source have nowhere to go, so that source is read no more; the other
// direction runs on until its own source ends (EOF or an error), the idle
// limit passes or ctx ends, so that every byte the side that went away
// had sent is still delivered. A server that answers and closes while its
// client is still sending makes the write toward it fail, and its last
// reply still reaches the client; a client that sends its last request
// and resets still has that request delivered. Such a session always
// leaves the upstream unclean (Result.Err is set).
//
// Join closes neither conn, and what the client sent after the copy
// stopped reading it stays unread. A caller that then simply closes the
// client makes its kernel send a reset, which can destroy bytes just
// delivered to the client that it has not read yet: half-close it first
// and discard its input for a short, bounded time (the listener package
// does).
//
// A session stopped by ctx or the idle limit may have been stopped between
// two parts of a reply, so it never leaves the upstream clean.
//
// A FIN (io.EOF on a read) is handled like this:
//
//   - Without Options.Reuse, a FIN from either side is passed on to the
//     other side with CloseWrite, and the other direction keeps flowing
//     until its own FIN: a client that half-closes after its request still
//     gets the whole reply.
//   - With Options.Reuse, the client's FIN is held back, since a
//     half-closed upstream cannot serve another client. If the last byte
//     before the FIN went toward the upstream (a reply is owed) and no reply
//     byte arrives within Options.DrainTimeout, reuse is given up: the FIN
//     is passed on (Result.UpstreamHalfClosed) and the session goes on as
//     without Reuse, for protocols that use the FIN as "end of request".
//     Otherwise the reply is relayed until the upstream has been quiet for
//     DrainTimeout, and the session ends with EndDrained, the upstream
//     untouched. With Options.DrainOwedOnly, a FIN that comes when no
//     reply is owed ends the session at once (EndDrained), for callers
//     that read late bytes themselves.
//   - An upstream FIN always makes the upstream unusable
//     (Result.UpstreamEOF); it is passed on to the client as above.
//   - A conn without a CloseWrite method cannot pass a FIN on; the session
//     then ends (the other direction is interrupted) instead of hanging.
//   - The idle limit applies after a FIN too.
//
// Result.UpstreamClean sums this up for the caller.
package splice
