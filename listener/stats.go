package listener

import (
	"sync/atomic"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// Stats is a snapshot of a ProxyListener's counters, next to its pool's.
type Stats struct {
	// Active is the number of live sessions; Sessions the number accepted.
	Active   int64
	Sessions uint64
	// BytesToUpstream and BytesToClient count bytes delivered by ended sessions.
	BytesToUpstream, BytesToClient uint64

	// AcceptErrors counts temporary accept errors that Serve retried.
	AcceptErrors uint64
	// HandshakeFailures counts clients closed because their TLS handshake
	// or Config.Prepare (a PROXY header, say) failed or timed out.
	HandshakeFailures uint64
	// UpstreamFailures counts clients closed because no upstream could be had.
	UpstreamFailures uint64
	// SessionErrors counts sessions that ended with a real error on either side.
	SessionErrors uint64
	// IdleTimeouts counts sessions ended by SessionIdleTimeout.
	IdleTimeouts uint64
	// Interrupted counts sessions cut by Close or an expired Shutdown.
	Interrupted uint64
	// Refused counts clients closed before an upstream was taken, by
	// reason (index by Refusal; entry 0 stays zero).
	Refused [RefusedNoRoute + 1]uint64
	// PeekFailures counts clients closed because their ClientHello could
	// not be peeked (Config.Routes).
	PeekFailures uint64

	// Pool is the pool's snapshot: with a balance.Set, the sum over its
	// servers' pools.
	Pool pool.Stats
}

type stats struct {
	active                         atomic.Int64
	sessions                       atomic.Uint64
	bytesToUpstream, bytesToClient atomic.Uint64
	acceptErrors                   atomic.Uint64
	handshakeFailures              atomic.Uint64
	upstreamFailures               atomic.Uint64
	sessionErrors                  atomic.Uint64
	idleTimeouts                   atomic.Uint64
	interrupted                    atomic.Uint64
	refused                        [RefusedNoRoute + 1]atomic.Uint64
	peekFailures                   atomic.Uint64
}

func (s *stats) record(r *splice.Result) {
	s.bytesToUpstream.Add(uint64(r.Up.Written))
	s.bytesToClient.Add(uint64(r.Down.Written))
	if r.Err != nil {
		s.sessionErrors.Add(1)
	}
	switch r.FirstEnd {
	case splice.EndIdle:
		s.idleTimeouts.Add(1)
	case splice.EndCanceled:
		s.interrupted.Add(1)
	}
}

// Stats returns a snapshot of the counters. It is cheap and safe to call
// at any time, also after Close.
func (l *ProxyListener) Stats() Stats {
	var refused [RefusedNoRoute + 1]uint64
	for i := range refused {
		refused[i] = l.stats.refused[i].Load()
	}
	return Stats{
		Refused:           refused,
		Active:            l.stats.active.Load(),
		Sessions:          l.stats.sessions.Load(),
		BytesToUpstream:   l.stats.bytesToUpstream.Load(),
		BytesToClient:     l.stats.bytesToClient.Load(),
		AcceptErrors:      l.stats.acceptErrors.Load(),
		HandshakeFailures: l.stats.handshakeFailures.Load(),
		UpstreamFailures:  l.stats.upstreamFailures.Load(),
		SessionErrors:     l.stats.sessionErrors.Load(),
		IdleTimeouts:      l.stats.idleTimeouts.Load(),
		Interrupted:       l.stats.interrupted.Load(),
		PeekFailures:      l.stats.peekFailures.Load(),
		Pool:              l.poolStats(),
	}
}
