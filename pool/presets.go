package pool

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
)

// RedisReset returns the Reset for Redis 6.2 and newer (and servers that
// implement its RESET command). In one write and one round trip it sends
//
//	ECHO <token1>
//	RESET
//	ECHO <token2>
//
// with tokens random per call, and accepts the conn only when the reply
// to RESET, +RESET, is proven to be its own: the data read ends with
// +RESET followed by token2's echo, or with token1's echo, +RESET and
// then an error for token2's ECHO (a server whose default user needs a
// password answers -NOAUTH after RESET logged the conn out). Everything
// the previous client was still owed comes before the tokens and is
// drained (Drains), and nothing can follow the last reply, so the conn
// needs no Settle time. A RESET the previous client pipelined, a CLIENT
// REPLY SKIP or OFF it left behind, or a reply it crafted to read
// +RESET cannot pass for ours: none of them can produce a token.
//
// RESET leaves MULTI, unwatches keys, stops client tracking and MONITOR,
// unsubscribes from every channel, pattern and shard channel, goes back
// to RESP2 and database 0, turns CLIENT REPLY on, clears the client's
// name, and logs the conn out to the default user. So, measured against
// redis-server 7.0 (see the tests named TestRedis* in package listener),
// no later client inherits a login, a database, a protocol version, a
// name, a subscription, a transaction, tracking or a MONITOR feed.
//
// It fails, and the conn is closed, when: a reply still owed exceeds
// 64 KiB; a blocking command (BLPOP) is still waiting, which holds the
// reset until ResetTimeout; a MONITOR feed or push lands between the
// replies; or the server answers RESET with an error (older than 6.2),
// which wraps ErrResetRefused and is logged once.
//
// Effects that remain, by design: a MONITOR client of the server sees
// the three commands; the server counts each reset in its command
// statistics; and the pool's warm spares and idle conns count as
// connected clients.
func RedisReset() Reset {
	return Reset{Func: redisReset, Drains: true}
}

// redisMarks are the byte strings redisReset sends and looks for.
type redisMarks struct {
	echo1      []byte // "$33\r\n" token1 "\r\n": token1's echo
	echo2      []byte // token2's echo
	resetEcho2 []byte // "+RESET\r\n" then echo2: success
	echo1Reset []byte // echo1 then "+RESET\r\n": RESET proven ours
}

const redisKeep = 512 // tail kept for matching: the marks and an error line

var (
	crlf       = []byte("\r\n")
	resetReply = []byte("+RESET\r\n")
)

func redisReset(ctx context.Context, c net.Conn) error {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	var rnd [16]byte
	rand.Read(rnd[:])
	var tok [2 * len(rnd)]byte
	hex.Encode(tok[:], rnd[:])

	// Token i is the random hex and the digit i: 33 bytes.
	s := sc.send[:0]
	s = append(s, "ECHO "...)
	s = append(append(s, tok[:]...), '1')
	s = append(s, "\r\nRESET\r\nECHO "...)
	s = append(append(s, tok[:]...), '2')
	s = append(s, "\r\n"...)
	sc.send = s

	m := &sc.redis
	m.echo1 = appendEcho(m.echo1[:0], tok[:], '1')
	m.echo2 = appendEcho(m.echo2[:0], tok[:], '2')
	m.resetEcho2 = append(append(m.resetEcho2[:0], resetReply...), m.echo2...)
	m.echo1Reset = append(append(m.echo1Reset[:0], m.echo1...), resetReply...)
	return resetExchange(ctx, c, sc.send, sc, redisKeep, "redis reset", matchRedis)
}

// appendEcho appends the RESP bulk string of tok and digit.
func appendEcho(b, tok []byte, digit byte) []byte {
	b = strconv.AppendInt(append(b, '$'), int64(len(tok)+1), 10)
	b = append(b, crlf...)
	b = append(append(b, tok...), digit)
	return append(b, crlf...)
}

// matchRedis is redisReset's matcher; see RedisReset for the rules.
func matchRedis(sc *scratch) (bool, error) {
	t, m := sc.tail, &sc.redis
	if bytes.HasSuffix(t, m.resetEcho2) {
		return true, nil
	}
	if bytes.HasSuffix(t, m.echo2) {
		// token2 without +RESET right before it: ours was answered
		// otherwise.
		prev := lastLine(t[:len(t)-len(m.echo2)])
		if len(prev) > 0 && prev[0] == '-' {
			return false, fmt.Errorf("pool: redis reset: RESET answered %q: %w", prev, ErrResetRefused)
		}
		return false, fmt.Errorf("pool: redis reset: no +RESET right before the echo (got %q)", prev)
	}
	last := lastLine(t)
	if len(last) == 0 || last[0] != '-' {
		return false, nil
	}
	before := t[:len(t)-len(last)-len(crlf)]
	switch {
	case !bytes.HasSuffix(before, resetReply):
		return false, nil
	case bytes.HasSuffix(before, m.echo1Reset):
		// token1, then our +RESET, then an error for ECHO token2: the
		// conn was reset and logged out (-NOAUTH), or its default user
		// may not ECHO (-NOPERM).
		return true, nil
	}
	// +RESET then an error, without token1: most likely both ECHOs were
	// refused, and nothing proves the +RESET ours. Fail now rather than
	// wait out ResetTimeout for a token that will not come.
	return false, fmt.Errorf("pool: redis reset: ECHO refused before and after RESET: %q", last)
}

// lastLine returns the last complete line of b without its CRLF, or nil
// when b does not end with one or the line began before b.
func lastLine(b []byte) []byte {
	if !bytes.HasSuffix(b, crlf) {
		return nil
	}
	b = b[:len(b)-len(crlf)]
	i := bytes.LastIndex(b, crlf)
	if i < 0 {
		return nil
	}
	return b[i+len(crlf):]
}

// MemcachedReset returns the Reset for memcached 1.6 and newer: the meta
// no-op, mn, whose answer MN follows every reply still owed (Drains).
// memcached's text and meta protocols keep no state per connection, so a
// drained conn is neutral. Its marker is fixed, so it has Fence's Settle
// time and limit (see Fence). A server without meta commands answers
// ERROR, which fails the Reset with ErrResetRefused (logged once). So
// does an ERROR still owed to the previous client that is read on its
// own: the conn is closed, which is safe, and the log line is then a
// false alarm.
//
// Never reuse connections of memcached's binary protocol that a client
// authenticated with SASL: the login stays on the connection, and this
// Reset does not speak that protocol. Use ReuseNever there.
func MemcachedReset() Reset {
	return Reset{Func: memcachedReset, Drains: true, Settle: fenceSettle}
}

var (
	mcNoop    = []byte("mn\r\n")
	mcNoopEnd = []byte("MN\r\n")
	mcError   = []byte("\r\nERROR\r\n")
)

func memcachedReset(ctx context.Context, c net.Conn) error {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	return resetExchange(ctx, c, mcNoop, sc, len(mcError), "memcached reset", matchMemcached)
}

func matchMemcached(sc *scratch) (bool, error) {
	switch {
	case bytes.HasSuffix(sc.tail, mcNoopEnd):
		return true, nil
	case bytes.HasSuffix(sc.tail, mcError) || bytes.Equal(sc.tail, mcError[2:]):
		return false, fmt.Errorf("pool: memcached reset: mn answered ERROR (no meta commands before 1.6): %w", ErrResetRefused)
	}
	return false, nil
}
