package balance

import (
	"slices"

	"github.com/relaykit/relay/pool"
)

// State is a server's health as a Set sees it.
type State uint8

const (
	// StateUp: sessions go to it.
	StateUp State = iota
	// StateEjected: passive detection took it out for a while.
	StateEjected
	// StateDown: active checks failed Fall times in a row.
	StateDown
	// StateDraining: no longer configured (Update, or its address left
	// the host name's answer); its live sessions finish.
	StateDraining
)

// String returns "up", "ejected", "down" or "draining".
func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateEjected:
		return "ejected"
	case StateDown:
		return "down"
	case StateDraining:
		return "draining"
	}
	return "unknown"
}

// ServerStats is a snapshot of one server's health and figures.
// Counters only grow.
type ServerStats struct {
	// Addr is the address dialed ("ip:port"); Name the configured entry
	// it comes from ("host:port").
	Addr, Name string
	Weight     int
	State      State
	// Active counts sessions in flight.
	Active int
	// Sessions counts sessions handed a connection to this server.
	Sessions uint64
	// DialFailures counts failed dials, spares' included; Failures
	// sessions the server reset before its first byte; CheckFailures
	// failed active checks.
	DialFailures, Failures, CheckFailures uint64
	// Ejections counts passive ejections; Downs the times active checks
	// marked it down.
	Ejections, Downs uint64
	// Pool is the server's pool's snapshot (reused and spare hand-outs,
	// idle conns, closes by reason).
	Pool pool.Stats
}

// Servers returns a snapshot of every server, live ones sorted by
// address, then those draining. A server appears once: one listed again
// while it drains is taken back, pool and health as they were.
func (set *Set) Servers() []ServerStats {
	set.mu.Lock()
	live := make([]*server, 0, len(set.servers))
	for _, sv := range set.servers {
		live = append(live, sv)
	}
	slices.SortFunc(live, byAddr)
	all := append(live, set.draining...)
	out := make([]ServerStats, len(all))
	for i, sv := range all {
		st := StateUp
		switch {
		case sv.removed.Load():
			st = StateDraining
		case sv.down:
			st = StateDown
		case sv.ejected:
			st = StateEjected
		}
		out[i] = ServerStats{Addr: sv.addr, Name: sv.name, Weight: sv.weight, State: st}
	}
	set.mu.Unlock()
	for i, sv := range all {
		o := &out[i]
		o.Active = int(max(sv.active.Load(), 0))
		o.Sessions = sv.sessions.Load()
		o.DialFailures = sv.dialFailures.Load()
		o.Failures = sv.failures.Load()
		o.CheckFailures = sv.checkFailures.Load()
		o.Ejections = sv.ejections.Load()
		o.Downs = sv.downs.Load()
		o.Pool = sv.pool.Stats()
	}
	return out
}

// Stats returns the servers' pools' figures summed (for
// listener.Stats.Pool).
// Its counters never go back: a server removed by Update or resolution
// keeps adding what its pool counted.
func (set *Set) Stats() pool.Stats {
	var s pool.Stats
	for _, sv := range set.Servers() {
		s.Add(sv.Pool)
	}
	set.mu.Lock()
	closing := slices.Clone(set.closing)
	s.Add(set.retired)
	set.mu.Unlock()
	for _, sv := range closing {
		s.Add(sv.pool.Stats())
	}
	return s
}

// NoServer counts Gets that failed because no server was left to try.
func (set *Set) NoServer() uint64 { return set.noServer.Load() }
