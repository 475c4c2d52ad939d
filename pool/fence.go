package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Fence limits.
const (
	// fenceLimit bounds how much a fence reads while looking for its echo
	// (replies still owed count towards it).
	fenceLimit = 64 << 10
	// fenceQuiet is how long a fence waits after its echo for bytes that
	// must not follow.
	fenceQuiet = 2 * time.Millisecond
)

// Fence returns a Reset hook that writes send and reads until the data
// read ends with expect (draining any reply still owed before it), then
// requires that nothing follows within a short quiet period. For example
// Redis: Fence([]byte("PING\r\n"), []byte("+PONG\r\n")); memcached:
// Fence([]byte("mn\r\n"), []byte("MN\r\n")). It panics if expect is empty.
//
// As the pool's Config.Reset, the fence returns at its echo and leaves
// the quiet period to the pool, which hands the conn to no client before
// it ends and then peeks it (bytes that followed the echo close it as
// stale); and since the fence drains, Release skips QuietPeriod before it.
//
// The hook reads through the conn itself (so on TLS it sees what the
// tls.Conn has buffered, which a socket peek cannot), honours ctx's
// deadline and cancellation, reads at most 64 KiB, and leaves deadlines
// set (the pool clears them).
//
// Limit: a fixed marker cannot tell its own echo from an identical one
// already owed, for example when the previous client sent the same PING
// and hung up before its reply. The early match is then followed by the
// fence's own echo, which the quiet period after the match, and the
// pool's peek after Reset, catch only if it has arrived by then. A marker
// unique per call closes the gap: see FenceFunc.
func Fence(send, expect []byte) func(ctx context.Context, c net.Conn) error {
	if len(expect) == 0 {
		panic("pool: Fence: empty expect")
	}
	send, expect = bytes.Clone(send), bytes.Clone(expect)
	return FenceFunc(func() ([]byte, []byte) { return send, expect })
}

// FenceFunc is Fence with a marker chosen per call: next returns what to
// send and the echo to expect, for example a random token for Redis:
//
//	pool.FenceFunc(func() (send, expect []byte) {
//		tok := strconv.FormatUint(rand.Uint64(), 36)
//		return []byte("ECHO " + tok + "\r\n"),
//			[]byte("$" + strconv.Itoa(len(tok)) + "\r\n" + tok + "\r\n")
//	})
//
// The hook fails if next returns an empty expect.
func FenceFunc(next func() (send, expect []byte)) func(ctx context.Context, c net.Conn) error {
	return func(ctx context.Context, c net.Conn) error {
		send, expect := next()
		if len(expect) == 0 {
			return errors.New("pool: fence: empty expect")
		}
		return fence(ctx, c, send, expect)
	}
}

// fenceBufs holds the fence's read buffers.
var fenceBufs = sync.Pool{New: func() any { return new(fenceScratch) }}

type fenceScratch struct {
	buf  [4096]byte
	tail []byte // the last bytes read, to match the echo against
}

// resetNote is how a fence called by the pool as its Reset hook tells it
// that it drained the conn and when its echo came: the pool then keeps
// the conn from clients for the fence's quiet period after that (see
// runReset). It rides in the hook's ctx.
type resetNote struct {
	drains bool      // the hook read until its echo: nothing owed is left
	echoAt time.Time // when the echo was read; zero: no quiet period owed
}

type resetNoteKey struct{}

// errFenceTrailing says bytes followed the echo.
var errFenceTrailing = errors.New("pool: fence: bytes after the echo")

// fence runs on the releasing goroutine, under the listener's session
// and the pool's Release: its frame and those it calls are kept small,
// with the reading and the error formatting in functions of their own.
// A 700-byte frame here used to grow a session goroutine's stack from 4
// to 8 KiB at every release.
func fence(ctx context.Context, c net.Conn, send, expect []byte) (err error) {
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		if err := c.SetDeadline(deadline); err != nil {
			return fenceErr(nil, "set deadline", err)
		}
	}
	// Cancellation interrupts a blocked Read or Write with a past deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = fenceEcho(ctx, c, send, expect)
	if err == nil {
		if n, _ := ctx.Value(resetNoteKey{}).(*resetNote); n != nil {
			// Called by the pool: it keeps the conn from every client
			// until the quiet period has passed and then peeks it, which
			// sees whatever arrived in the meantime, without holding this
			// goroutine or a timer.
			n.drains = true
			n.echoAt = time.Now()
		} else {
			err = fenceQuietRead(ctx, c, deadline, hasDeadline)
		}
	}
	// If the interrupt fired, it may land after we return: fail, so that
	// the pool closes the conn rather than keep a poisoned one.
	if !stop() && err == nil {
		err = fenceErr(ctx, "", ctx.Err())
	}
	return err
}

// fenceErr wraps a fence's error; what names the step. When ctx has
// ended, its error replaces err, which is then only the interrupt's
// deadline.
//
//go:noinline
func fenceErr(ctx context.Context, what string, err error) error {
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	if what == "" {
		return fmt.Errorf("pool: fence: %w", err)
	}
	return fmt.Errorf("pool: fence: %s: %w", what, err)
}

// fenceEcho writes send and reads until the data read ends with expect.
//
//go:noinline
func fenceEcho(ctx context.Context, c net.Conn, send, expect []byte) error {
	if _, err := c.Write(send); err != nil {
		return fenceErr(ctx, "write", err)
	}
	sc := fenceBufs.Get().(*fenceScratch)
	defer fenceBufs.Put(sc)
	buf := sc.buf[:]
	tail := sc.tail[:0]
	defer func() { sc.tail = tail[:0] }()
	for total := 0; ; {
		n, err := c.Read(buf)
		if n > 0 {
			total += n
			tail = append(tail, buf[:n]...)
			if len(tail) > len(expect) {
				tail = append(tail[:0], tail[len(tail)-len(expect):]...)
			}
			if bytes.HasSuffix(tail, expect) {
				return nil
			}
			if total >= fenceLimit {
				return fmt.Errorf("pool: fence: no echo in the first %d bytes", fenceLimit)
			}
		}
		if err != nil {
			return fenceErr(ctx, "waiting for the echo", err)
		}
	}
}

// fenceQuietRead requires that nothing follows the echo within the quiet
// period (or until the deadline, if sooner).
//
//go:noinline
func fenceQuietRead(ctx context.Context, c net.Conn, deadline time.Time, hasDeadline bool) error {
	quiet := time.Now().Add(fenceQuiet)
	if hasDeadline && deadline.Before(quiet) {
		quiet = deadline
	}
	if err := c.SetReadDeadline(quiet); err != nil {
		return fenceErr(ctx, "after the echo", err)
	}
	sc := fenceBufs.Get().(*fenceScratch)
	defer fenceBufs.Put(sc)
	n, err := c.Read(sc.buf[:1])
	switch {
	case n > 0:
		return errFenceTrailing
	case err == nil:
		return fenceErr(ctx, "after the echo", io.ErrNoProgress)
	case ctx.Err() != nil:
		return fenceErr(ctx, "after the echo", ctx.Err())
	case !isTimeout(err):
		return fenceErr(ctx, "after the echo", err)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
