package pool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Fence limits.
const (
	// fenceLimit bounds how much a fence reads while looking for its echo
	// (replies still owed count towards it).
	fenceLimit = 64 << 10
	// fenceSettle is a fixed-marker fence's Reset.Settle: how long after
	// its echo the conn is kept from clients, so that bytes that must not
	// follow the echo are seen by the hand-out peek.
	fenceSettle = 2 * time.Millisecond
)

// Fence returns a Reset that writes send and reads until the data read
// ends with expect, draining any reply still owed before it (Drains).
// It panics if expect is empty.
//
// A fence proves that the byte stream is aligned, not that the
// protocol's session state is neutral: with a marker that does not also
// reset that state (a login, a selected database, a subscription, a
// transaction, a protocol version), the next client inherits whatever
// the previous one set. For Redis use RedisReset, not a PING fence; for
// memcached's text protocol, which keeps no such state, MemcachedReset.
//
// A fixed marker cannot tell its own echo from an identical one already
// owed, for example when the previous client sent the same marker and
// hung up before its reply. The early match is then followed by the
// fence's own echo; so the pool keeps the conn from clients for Settle
// (2 ms) after the echo and then peeks it, and bytes that arrived close
// it. An echo later than that reaches the next client: a marker unique
// per call closes the gap (see FenceFunc).
//
// Func reads through the conn itself (so on TLS it sees what the
// tls.Conn has buffered, which a socket peek cannot), honours ctx's
// deadline and cancellation, reads at most 64 KiB, and leaves deadlines
// set (the pool clears them). Called on its own, it returns at the echo:
// the Settle wait and the peek after it are the pool's.
func Fence(send, expect []byte) Reset {
	if len(expect) == 0 {
		panic("pool: Fence: empty expect")
	}
	send, expect = bytes.Clone(send), bytes.Clone(expect)
	return FenceFunc(func() ([]byte, []byte) { return send, expect })
}

// FenceFunc is Fence with a marker chosen per call: next returns what to
// send and the echo to expect, for example a random token:
//
//	r := pool.FenceFunc(func() (send, expect []byte) {
//		tok := strconv.FormatUint(rand.Uint64(), 36)
//		return []byte("ECHO " + tok + "\r\n"),
//			[]byte("$" + strconv.Itoa(len(tok)) + "\r\n" + tok + "\r\n")
//	})
//	r.Settle = 0 // the echo of a unique token cannot be owed already
//
// Func fails if next returns an empty expect. Settle is 2 ms, as for
// Fence; set it to zero when every marker is unique.
func FenceFunc(next func() (send, expect []byte)) Reset {
	return Reset{
		Func: func(ctx context.Context, c net.Conn) error {
			send, expect := next()
			if len(expect) == 0 {
				return errors.New("pool: fence: empty expect")
			}
			sc := scratchPool.Get().(*scratch)
			defer scratchPool.Put(sc)
			sc.expect = expect
			defer func() { sc.expect = nil }()
			return resetExchange(ctx, c, send, sc, len(expect), "fence", matchSuffix)
		},
		Drains: true,
		Settle: fenceSettle,
	}
}

// matchSuffix is Fence's matcher: done once the data ends with the
// expected echo.
func matchSuffix(sc *scratch) (bool, error) {
	return bytes.HasSuffix(sc.tail, sc.expect), nil
}

// scratch holds a reset's buffers, reused across calls through
// scratchPool.
type scratch struct {
	buf  [4096]byte
	tail []byte // the last bytes read, up to the matcher's keep
	send []byte // built by a preset

	expect []byte // Fence's echo
	redis  redisMarks
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// resetExchange writes send to c and reads until match, looking at sc.tail
// (the last keep bytes read), reports done or an error. It reads at most
// fenceLimit bytes. name prefixes its errors ("pool: NAME: ...").
// Cancellation of ctx interrupts a blocked Read or Write with a past
// deadline; ctx's deadline is set on c.
func resetExchange(ctx context.Context, c net.Conn, send []byte, sc *scratch, keep int, name string,
	match func(*scratch) (bool, error)) (err error) {
	if deadline, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(deadline); err != nil {
			return stepErr(nil, name, "set deadline", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = readUntil(ctx, c, send, sc, keep, name, match)
	// If the interrupt fired, it may land after we return: fail, so that
	// the pool closes the conn rather than keep a poisoned one.
	if !stop() && err == nil {
		err = stepErr(ctx, name, "", ctx.Err())
	}
	return err
}

// readUntil is resetExchange's write and read loop.
func readUntil(ctx context.Context, c net.Conn, send []byte, sc *scratch, keep int, name string,
	match func(*scratch) (bool, error)) error {
	if _, err := c.Write(send); err != nil {
		return stepErr(ctx, name, "write", err)
	}
	sc.tail = sc.tail[:0]
	for total := 0; ; {
		n, err := c.Read(sc.buf[:])
		if n > 0 {
			total += n
			sc.tail = append(sc.tail, sc.buf[:n]...)
			if len(sc.tail) > keep {
				sc.tail = append(sc.tail[:0], sc.tail[len(sc.tail)-keep:]...)
			}
			done, merr := match(sc)
			switch {
			case merr != nil:
				return merr
			case done:
				return nil
			case total >= fenceLimit:
				return fmt.Errorf("pool: %s: no echo in the first %d bytes", name, fenceLimit)
			}
		}
		if err != nil {
			return stepErr(ctx, name, "waiting for the echo", err)
		}
	}
}

// stepErr wraps a reset's error; name is the reset's, what the step.
// When ctx has ended, its error replaces err, which is then only the
// interrupt's deadline.
func stepErr(ctx context.Context, name, what string, err error) error {
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	if what == "" {
		return fmt.Errorf("pool: %s: %w", name, err)
	}
	return fmt.Errorf("pool: %s: %s: %w", name, what, err)
}
