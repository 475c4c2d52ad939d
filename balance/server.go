package balance

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/pool"
)

// server is one upstream address with its pool and health.
type server struct {
	set  *Set
	addr string // resolved "ip:port"
	hash uint64 // hash of addr, for ClientIP
	pool *pool.Pool

	name, host string // as configured; with addr, the server's identity

	// Under set.mu. Picks read the weight from the view instead.
	weight     int
	ejected    bool        // by passive detection
	down       bool        // by active checks
	ejectTimer *time.Timer // ends the ejection
	poolClosed bool

	removed   atomic.Bool        // no longer configured: draining or gone; set under set.mu
	stopCheck context.CancelFunc // ends the checker; nil when none

	active  atomic.Int64 // sessions in flight, and reservations
	streak  atomic.Int32 // failures in a row
	backoff atomic.Int32 // ejections in a row: doubles the time
	probing atomic.Bool  // back from an ejection: one failure ejects

	sessions, dialFailures, failures atomic.Uint64
	checkFailures, ejections, downs  atomic.Uint64
}

// newServer starts m's pool; the checker starts with startLocked.
func (set *Set) newServer(m member) (*server, error) {
	sv := &server{set: set, addr: m.addr, hash: hashString(m.addr), name: m.name, host: m.host, weight: m.weight}
	pc := set.s.Pool
	pc.Addr = m.addr
	pc.Network = set.s.Network
	pc.Dial = sv.dial
	pc.OnDial = sv.dialed
	pc.OnRelease = sv.released
	if pc.Logger == nil {
		pc.Logger = set.s.Logger
	}
	p, err := pool.New(pc)
	if err != nil {
		return nil, err
	}
	sv.pool = p
	return sv, nil
}

// key is sv's identity, as member.key.
func (sv *server) key() string { return member{addr: sv.addr, name: sv.name}.key() }

// dial opens a connection to sv: Config.Dial, or a net.Dialer.
func (sv *server) dial(ctx context.Context) (net.Conn, error) {
	if d := sv.set.s.Dial; d != nil {
		return d(ctx, sv.addr, sv.host)
	}
	var d net.Dialer
	return d.DialContext(ctx, sv.set.s.Network, sv.addr)
}

// startLocked starts sv's active checker, when checks are on.
func (sv *server) startLocked() {
	if sv.set.s.Check.Every <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv.stopCheck = cancel
	sv.set.wg.Add(1)
	go sv.checkLoop(ctx)
}

// stopLocked stops sv's checker and its ejection timer.
func (sv *server) stopLocked() {
	if sv.stopCheck != nil {
		sv.stopCheck()
		sv.stopCheck = nil
	}
	if sv.ejectTimer != nil {
		sv.ejectTimer.Stop()
		sv.ejectTimer = nil
	}
}

func (sv *server) healthyLocked() bool { return !sv.ejected && !sv.down && !sv.removed.Load() }

// reserve counts a session about to go to sv, unless sv is at
// MaxSessions.
func (sv *server) reserve() bool {
	limit := int64(sv.set.s.MaxSessions)
	if limit == 0 {
		sv.active.Add(1)
		return true
	}
	for {
		n := sv.active.Load()
		if n >= limit {
			return false
		}
		if sv.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unreserve gives a reservation back: the session ended, or never got a
// connection.
func (sv *server) unreserve() {
	if sv.active.Add(-1) == 0 && sv.removed.Load() {
		sv.set.mu.Lock()
		sv.set.reapLocked()
		sv.set.mu.Unlock()
	}
	sv.set.wake()
}

// released is the pool's OnRelease: the session on sv ended.
func (sv *server) released(v pool.Verdict) {
	switch {
	case v.UpstreamFailed:
		sv.failures.Add(1)
		sv.fail("session reset by the server before its first byte")
	case v.Used:
		sv.succeed()
	}
	sv.unreserve()
}

// dialed is the pool's OnDial.
func (sv *server) dialed(err error) {
	if err == nil || sv.removed.Load() || sv.set.isClosed() {
		return // a dial canceled by the pool's Close is no failure
	}
	sv.dialFailures.Add(1)
	sv.fail("dial: " + err.Error())
}

// succeed notes a session that sv did not fail: the failure count and the
// ejection backoff start again.
func (sv *server) succeed() {
	if sv.streak.Load() != 0 {
		sv.streak.Store(0)
	}
	if sv.backoff.Load() != 0 {
		sv.backoff.Store(0)
	}
	if sv.probing.Load() {
		sv.probing.Store(false)
	}
}

// fail counts one failure against sv and ejects it after
// Passive.Failures in a row (one, on probation).
func (sv *server) fail(why string) {
	limit := sv.set.s.failures
	if limit <= 0 {
		return
	}
	n := sv.streak.Add(1)
	if n < int32(limit) && !sv.probing.Load() {
		return
	}
	set := sv.set
	set.mu.Lock()
	defer set.mu.Unlock()
	if sv.ejected || sv.removed.Load() || set.closed {
		return
	}
	if v := set.view.Load(); len(v.up) == 1 && v.up[0] == sv {
		// The last healthy server is never ejected (nginx's rule for a
		// lone server): with it out, every client would be refused until
		// the cooling time ends, though it may be back long before. Its
		// clients keep trying it, and fail as fast as its dials do.
		return
	}
	k := sv.backoff.Add(1)
	d := set.s.Passive.Ejection
	for i := int32(1); i < k && d < set.s.Passive.MaxEjection; i++ {
		d *= 2
	}
	d = min(d, set.s.Passive.MaxEjection)
	sv.ejected = true
	sv.probing.Store(false)
	sv.streak.Store(0)
	sv.ejections.Add(1)
	sv.ejectTimer = time.AfterFunc(d, sv.endEjection)
	sv.pool.SetStandby(true)
	set.republishLocked()
	set.s.log.Warn("balance: server ejected", "addr", sv.addr, "name", sv.name,
		"failures", n, "last", why, "for", d)
}

// endEjection ends sv's ejection when its time is up, on probation: its
// next failure ejects it again, for twice as long.
func (sv *server) endEjection() {
	sv.set.mu.Lock()
	defer sv.set.mu.Unlock()
	if !sv.ejected || sv.removed.Load() || sv.set.closed {
		return
	}
	if sv.ejectTimer != nil {
		sv.ejectTimer.Stop()
		sv.ejectTimer = nil
	}
	sv.ejected = false
	sv.probing.Store(true)
	sv.streak.Store(0)
	if !sv.down {
		sv.pool.SetStandby(false)
	}
	sv.set.republishLocked()
	sv.set.s.log.Info("balance: server back from ejection", "addr", sv.addr, "name", sv.name)
}

// markLocked applies an active check's verdict: down after Fall
// failures, up after Rise successes.
func (sv *server) markLocked(down bool) {
	if sv.down == down || sv.removed.Load() || sv.set.closed {
		return
	}
	sv.down = down
	if down {
		sv.downs.Add(1)
		sv.pool.SetStandby(true)
		sv.set.s.log.Warn("balance: server down", "addr", sv.addr, "name", sv.name, "failed_checks", sv.set.s.fall)
	} else {
		if !sv.ejected {
			sv.pool.SetStandby(false)
		}
		sv.set.s.log.Info("balance: server up", "addr", sv.addr, "name", sv.name, "passed_checks", sv.set.s.rise)
	}
	sv.set.republishLocked()
}
