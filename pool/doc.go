// Package pool dials, keeps, checks, hands out and takes back upstream
// connections for a TCP forwarder. It knows nothing of copying: the caller
// says, at release, how the session went (a Verdict), and the pool decides
// whether the connection may serve another client.
//
// # Usage
//
//	p, err := pool.New(pool.Config{
//		Addr:   "127.0.0.1:6379",
//		Spares: 8, // fresh connections dialed ahead
//	})
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//
//	lease, err := p.Get(ctx) // ctx bounds the wait, not the dial
//	if err != nil {
//		return err // ErrClosed, ctx.Err(), or a "pool: dial:" error
//	}
//	res := splice.Join(ctx, client, lease.Conn(), opts)
//	outcome := lease.Release(pool.Verdict{Used: res.Used(), Clean: res.UpstreamClean()})
//
// Get hands out, in this order: the most recently used idle connection
// that passes its checks (SourceReused), a fresh spare (SourceSpare), or a
// new dial (SourceDial). With MaxOpen reached, callers wait in FIFO order.
// Checks cost no round trip: age (MaxLifetime, IdleTimeout) first, then
// the deadlines are cleared, then a non-blocking peek of the socket
// (recv with MSG_PEEK|MSG_DONTWAIT): EOF or an error means dead; unread
// bytes on a connection that served a client before mean stale; unread
// bytes on a fresh one are its server's greeting, which belongs to its
// first client. A connection that fails is closed, counted, and the next
// one tried: the caller never sees it.
//
// Release is exactly once per hand-out: a second Release, or one on a
// stale copy of the Lease, is a no-op (OutcomeNone). A lease given back
// untouched (Verdict.Used false) goes back as it came: a fresh conn as a
// spare under any policy, unless a peek finds it dead.
//
// # Why reuse is opt-in: the leak it prevents
//
// A raw TCP connection can carry state from one client to the next. The
// concrete case: a client sends a request and hangs up before the reply
// arrives. The forwarder stops copying and, in a naive pool, puts the
// upstream connection back. The reply then arrives on that connection and
// is read by the next client that gets it, as if it were the answer to
// its own request. In listener's TestIsolationFailsWithoutRules, where a
// third of 2000 sessions hang up early, hundreds of sessions of such a
// naive pool read another client's bytes in a run (53-395 in the runs
// seen, fewer under -race). A peek at hand-out does
// not stop it: the reply is still in flight when the peek runs. Other
// state leaks the same way: a subscription that keeps pushing, a login,
// a selected database, an open transaction.
//
// So a used connection is kept only when all of these hold: the policy
// allows reuse; the verdict says clean (no error but our own interrupt,
// no EOF from the upstream, the last bytes moved toward the client, so
// no reply is owed); after QuietPeriod a peek finds nothing pending; it is
// younger than MaxLifetime; Reset, if the policy needs it, succeeded; and
// MaxIdle is not reached. Otherwise it is closed, and Release returns and
// Stats count the reason.
//
// # Policies
//
// ReuseNever (the default) closes every used connection. The pool still
// pays off: it keeps Spares fresh connections dialed ahead, so a client
// does not wait for a TCP or TLS handshake. Safe for any protocol,
// including ones with server greetings, pushes or per-connection state.
//
// ReuseIfClean keeps a used connection on the verdict and the quiet peek
// alone. Safe only for strict request/response protocols without
// pipelining, subscriptions, server pushes or per-connection state (for
// example plain HTTP/1.1 without pipelining, or Redis used without AUTH,
// SELECT, HELLO, CLIENT SETNAME or TRACKING, WATCH, MULTI or SUBSCRIBE).
// Its limit: the verdict and the peek see
// only what has arrived. When a reply comes in parts and its client hangs
// up after the first, a remainder that arrives after the session's drain
// and the quiet period reaches the next client of that connection. Where
// replies can be slow or split, use ReuseIfVerified: its Reset drains
// whatever is still owed.
//
// ReuseIfVerified also runs Config.Reset, which uses protocol knowledge
// to return the connection to a neutral state in two respects: the byte
// stream (every reply still owed is drained) and the protocol's session
// state (a login, a selected database, a subscription, a transaction, a
// protocol version: whatever the client changed on the connection). The
// presets do both for their servers: RedisReset (RESET, between two
// random ECHO tokens that prove its +RESET its own) and MemcachedReset
// (mn; memcached's text and meta protocols keep no state per
// connection). Fence and FenceFunc do the first only: a marker and its
// echo prove that nothing is owed, and are enough only for a protocol
// without session state or with a marker that also resets it. Measured
// against redis-server 7.0, a PING fence handed the next client the
// previous one's login, database, protocol version, name, tracking and
// (on RESP3) subscriptions; RedisReset none of them (the TestRedis*
// tests of package listener). Reset.Drains and Reset.Settle tell the
// pool what a Reset guarantees, so it can skip waits the Reset makes
// moot.
//
// The peek works on Unix (Linux, macOS, the BSDs) for connections that
// are sockets, or wrap one behind a NetConn method, as *tls.Conn does.
// Elsewhere (Windows, or a conn that is not a socket) a used connection
// cannot be vetted, so it is closed (ClosedNotClean): the reuse policies
// take effect on Unix only, and spares work everywhere. A socket peek
// cannot see bytes a wrapper has already read from the socket (a
// tls.Conn reads ahead whole records), so for a conn that wraps its
// socket the checks of a used conn also Read it once with an expired
// deadline: a tls.Conn returns buffered plaintext, or decrypts a
// buffered record, before it touches the socket.
//
// # Spares and the background goroutine
//
// One goroutine per pool keeps Spares fresh connections, refilled after
// each hand-out: it dials every missing spare at once (up to 64 at a
// time). Against a failing upstream it dials one at a time, backs off
// exponentially with jitter (50 ms up to 5 s), logs "upstream down" once
// with the error and "upstream recovered" once when a dial succeeds
// again, and recovers by itself. The same goroutine sweeps idle
// connections past IdleTimeout or MaxLifetime, or found dead or stale by
// a peek; a swept spare is replaced.
//
// Dials, the keeper's and those of callers that found no idle conn, run
// on dial workers: goroutines that take the next dial and exit after a
// second without one. Close stops the keeper and the workers and waits
// for them.
package pool
