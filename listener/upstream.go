package listener

import (
	"context"
	"net"

	"github.com/relaykit/relay/pool"
)

// Upstream is where a ProxyListener takes its upstream connections: a
// *pool.Pool (one address) or a *balance.Set (several servers, one pool
// each). The listener releases every lease it got with the session's
// verdict.
type Upstream interface {
	// Get returns a lease on an upstream connection, or an error once ctx
	// ends (GetTimeout) or no connection can be had.
	Get(ctx context.Context) (pool.Lease, error)
	// Policy is the reuse policy of the connections handed out: with
	// pool.ReuseNever the copy passes a client's FIN on to the upstream.
	Policy() pool.Policy
	// ResetDrains reports whether a used connection's Reset reads every
	// reply still owed (see Config.DrainTimeout).
	ResetDrains() bool
	// Stats returns the pools' figures, summed over every pool.
	Stats() pool.Stats
}

// ClientUpstream is an Upstream that picks by client, such as a
// *balance.Set with the client-ip policy. The listener calls GetFor, with
// the client's address, instead of Get.
type ClientUpstream interface {
	Upstream
	GetFor(ctx context.Context, client net.Addr) (pool.Lease, error)
}

var _ Upstream = (*pool.Pool)(nil)
