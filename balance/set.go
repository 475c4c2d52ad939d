package balance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaykit/relay/pool"
)

// ErrNoServer is returned by Get when no server can take a session: every
// server is ejected or down, or every one that was tried failed.
var ErrNoServer = errors.New("balance: no healthy server")

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("balance: closed")

// Set is a set of upstream servers, each with a pool.Pool of its own, that
// picks a server per session. It is safe for concurrent use. A
// *Set is a listener.Upstream (and, for ClientIP, a
// listener.ClientUpstream): pass it to listener.New.
type Set struct {
	s settings

	view atomic.Pointer[view] // what Get picks from; replaced, never changed
	rr   atomic.Uint64        // RoundRobin's turn, and the ties' rotation

	// nwait mirrors len(waiters), so that a release can skip the lock.
	nwait atomic.Int32
	// noServer counts Gets that failed for want of a server.
	noServer atomic.Uint64

	mu        sync.Mutex
	closed    bool
	resolving bool                    // the resolver loop runs
	specs     []Server                // as configured (Update replaces them)
	resolved  map[string][]netip.Addr // by host name: the last good lookup
	servers   map[string]*server      // by member.key, live ones only
	draining  []*server               // removed, until their last session ends
	closing   []*server               // removed, their pools closing
	retired   pool.Stats              // the counters of removed servers' closed pools
	waiters   []*waiter               // callers waiting under MaxSessions, oldest first

	done chan struct{}  // closed by Close
	wg   sync.WaitGroup // the resolver, the checkers and pools being closed
}

// view is an immutable snapshot of the servers a session may go to.
type view struct {
	policy Policy
	up     []*server // healthy servers, by address
	w      []int     // their weights, as they were when the view was made
	// seq is RoundRobin's smooth weighted order over up.
	seq []*server
	// cum holds the running sums of up's weights, for Random.
	cum []int
}

// New validates cfg, resolves its host names (a name that does not
// resolve is an error naming it) and starts a pool per server, the
// checkers and the resolver.
func New(cfg Config) (*Set, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if err := checkServers(cfg.Servers); err != nil {
		return nil, err
	}
	set := &Set{
		s:        s,
		resolved: make(map[string][]netip.Addr),
		servers:  make(map[string]*server),
		done:     make(chan struct{}),
	}
	members, err := set.resolveAll(context.Background(), cfg.Servers, true)
	if err != nil {
		return nil, err
	}
	set.mu.Lock()
	set.specs = slices.Clone(cfg.Servers)
	if err = set.applyLocked(members, cfg.Policy); err == nil {
		set.startResolverLocked()
	}
	set.mu.Unlock()
	if err != nil {
		set.Close()
		return nil, err
	}
	return set, nil
}

// Update replaces the server list and the policy without dropping a live
// session: a server no longer listed drains (no new sessions; live ones
// finish on its pool, which is then closed), a new one starts its pool
// and warms its spares, and one that stays keeps its pool and health,
// taking its new weight. Host names are resolved first; when the list is
// invalid or a name does not resolve (within ctx), Update returns the
// error and the running set stays as it was.
func (set *Set) Update(ctx context.Context, servers []Server, policy Policy) error {
	if int(policy) >= len(policyNames) {
		return fmt.Errorf("balance: Update: unknown policy %d", uint8(policy))
	}
	if err := checkServers(servers); err != nil {
		return err
	}
	members, err := set.resolveAll(ctx, servers, true)
	if err != nil {
		return err
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.closed {
		return ErrClosed
	}
	set.specs = slices.Clone(servers)
	if err := set.applyLocked(members, policy); err != nil {
		return err
	}
	set.startResolverLocked()
	return nil
}

// member is one resolved server: the address it is dialed at, the entry
// it came from.
type member struct {
	addr   string // "ip:port"
	host   string // as configured: a name or an IP
	name   string // the configured Addr
	weight int
}

// key is a server's identity: its entry and its address. The same
// address reached by two names is two servers (a TLS server name each).
func (m member) key() string { return m.name + " " + m.addr }

// applyLocked makes the live servers match members: new ones start,
// missing ones drain, the rest take their weight. Then it publishes a
// new view.
func (set *Set) applyLocked(members []member, policy Policy) error {
	want := make(map[string]member, len(members))
	for _, m := range members {
		if _, dup := want[m.key()]; !dup { // the first of twin entries wins
			want[m.key()] = m
		}
	}
	var started []*server
	for key, m := range want {
		if sv := set.servers[key]; sv != nil {
			sv.weight = m.weight
			continue
		}
		if sv := set.reviveLocked(key); sv != nil {
			sv.weight = m.weight
			set.servers[key] = sv
			started = append(started, sv)
			continue
		}
		sv, err := set.newServer(m)
		if err != nil {
			for _, s := range started {
				delete(set.servers, s.key())
				set.drainLocked(s)
			}
			return err
		}
		set.servers[key] = sv
		started = append(started, sv)
	}
	for key, sv := range set.servers {
		if _, ok := want[key]; !ok {
			delete(set.servers, key)
			set.drainLocked(sv)
		}
	}
	for _, sv := range started {
		sv.startLocked()
	}
	set.publishLocked(policy)
	return nil
}

// reviveLocked takes the server with key back from the draining list,
// its pool and health as they were, or returns nil.
func (set *Set) reviveLocked(key string) *server {
	i := slices.IndexFunc(set.draining, func(sv *server) bool { return sv.key() == key })
	if i < 0 {
		return nil
	}
	sv := set.draining[i]
	set.draining = slices.Delete(set.draining, i, i+1)
	sv.removed.Store(false)
	if sv.ejected { // its timer stopped with the drain
		sv.ejected = false
		sv.probing.Store(true)
		if !sv.down {
			sv.pool.SetStandby(false)
		}
	}
	set.s.log.Info("balance: server back from draining", "addr", sv.addr, "name", sv.name)
	return sv
}

// drainLocked takes sv out of the set: no new session goes to it, its
// checker stops, and its pool closes once its last session ended (live
// sessions finish on their conns).
func (set *Set) drainLocked(sv *server) {
	sv.removed.Store(true)
	sv.stopLocked()
	if sv.active.Load() == 0 {
		set.closePool(sv)
		return
	}
	set.draining = append(set.draining, sv)
	set.s.log.Info("balance: server draining", "addr", sv.addr, "name", sv.name, "active", sv.active.Load())
}

// closePool closes sv's pool on a goroutine of its own (Close waits for
// dials in flight), tracked by set.wg.
//
// A removed server's pool counters live on in Stats: summed from the
// pool while it closes, then kept in set.retired, so that the set's
// counters never go back.
func (set *Set) closePool(sv *server) {
	if sv.poolClosed {
		return
	}
	sv.poolClosed = true
	removed := sv.removed.Load()
	if removed {
		set.closing = append(set.closing, sv)
	}
	set.wg.Add(1)
	go func() {
		defer set.wg.Done()
		sv.pool.Close()
		if !removed {
			return
		}
		st := sv.pool.Stats()
		set.mu.Lock()
		set.retired.Add(counters(st))
		set.closing = slices.DeleteFunc(set.closing, func(c *server) bool { return c == sv })
		set.mu.Unlock()
	}()
}

// counters is st without its gauges: what a closed pool leaves behind.
func counters(st pool.Stats) pool.Stats {
	st.Open, st.IdleFresh, st.IdleUsed, st.InUse, st.Waiting, st.Dialing = 0, 0, 0, 0, 0, 0
	return st
}

// reapLocked closes the pools of draining servers whose last session
// ended.
func (set *Set) reapLocked() {
	set.draining = slices.DeleteFunc(set.draining, func(sv *server) bool {
		if sv.active.Load() > 0 {
			return false
		}
		set.closePool(sv)
		set.s.log.Info("balance: server drained", "addr", sv.addr, "name", sv.name)
		return true
	})
}

// publishLocked builds a new view from the live servers' health and
// weights, and publishes it.
func (set *Set) publishLocked(policy Policy) {
	v := &view{policy: policy}
	for _, sv := range set.servers {
		if sv.healthyLocked() {
			v.up = append(v.up, sv)
		}
	}
	slices.SortFunc(v.up, byAddr)
	sum := 0
	for _, sv := range v.up {
		v.w = append(v.w, sv.weight)
		sum += sv.weight
		v.cum = append(v.cum, sum)
	}
	v.seq = smoothOrder(v.up, v.w)
	set.view.Store(v)
	// Health changed: a waiter may now have room, or nothing left to
	// wait for (it then fails at once, and passes the turn on).
	set.wakeLocked()
}

// republishLocked publishes a new view with the current policy, after a
// change of health.
func (set *Set) republishLocked() {
	if set.closed {
		return
	}
	set.publishLocked(set.view.Load().policy)
}

// Policy returns the pools' reuse policy (Config.Pool.Reuse).
func (set *Set) Policy() pool.Policy { return set.s.Pool.Reuse }

// ResetDrains reports whether a used connection's Reset reads every reply
// still owed (as pool.Pool.ResetDrains).
func (set *Set) ResetDrains() bool {
	return set.s.Pool.Reuse == pool.ReuseIfVerified && set.s.Pool.Reset.Drains
}

// Balance returns the current policy.
func (set *Set) Balance() Policy { return set.view.Load().policy }

// Get picks a server (Config.Policy; a client-less Get treats ClientIP
// as RoundRobin) and returns a lease from its pool. A dial that fails or
// times out (pool.Config.DialTimeout, per try) is retried on another
// healthy server, within ctx. It returns ErrNoServer, wrapping the last
// dial error, when no server is left to try; ctx's error when ctx ends
// first (waiting under MaxSessions, or dialing); ErrClosed after Close.
func (set *Set) Get(ctx context.Context) (pool.Lease, error) {
	return set.get(ctx, netip.Addr{})
}

// GetFor is Get for a client at addr, which the ClientIP policy hashes.
func (set *Set) GetFor(ctx context.Context, client net.Addr) (pool.Lease, error) {
	return set.get(ctx, clientIP(client))
}

func (set *Set) get(ctx context.Context, ip netip.Addr) (pool.Lease, error) {
	var (
		buf     [8]*server
		tried   = buf[:0]
		lastErr error
		turn    bool // woken from the queue: pick before those behind
	)
	for {
		if err := ctx.Err(); err != nil {
			if turn { // woken for a slot it will not take: pass it on
				set.wake()
			}
			return pool.Lease{}, err
		}
		v := set.view.Load()
		if v == nil || set.isClosed() {
			return pool.Lease{}, ErrClosed
		}
		var sv *server
		full := false
		if turn || set.nwait.Load() == 0 {
			sv, full = set.pick(v, ip, tried)
		} else {
			full = true // others wait first: FIFO
		}
		if sv == nil {
			if !full {
				if turn {
					set.wake()
				}
				set.noServer.Add(1)
				if lastErr != nil {
					return pool.Lease{}, fmt.Errorf("%w: %d tried, the last: %w", ErrNoServer, len(tried), lastErr)
				}
				return pool.Lease{}, ErrNoServer
			}
			if err := set.await(ctx, turn, tried); err != nil {
				return pool.Lease{}, err
			}
			turn = true
			continue
		}
		if sv.removed.Load() { // drained since the view was taken
			sv.unreserve()
			tried = append(tried, sv)
			continue
		}
		if turn && set.nwait.Load() > 0 {
			set.wake() // room may be left for the next in line
		}
		lease, err := sv.pool.Get(ctx)
		if err == nil {
			sv.sessions.Add(1)
			return lease, nil
		}
		sv.unreserve()
		if ctx.Err() != nil {
			return pool.Lease{}, err
		}
		if !errors.Is(err, pool.ErrClosed) { // a closed pool: removed meanwhile
			lastErr = err
		}
		tried = append(tried, sv)
	}
}

// await waits, in FIFO order, until a server frees a slot under
// MaxSessions, or ctx ends. A caller that had its turn and lost the slot
// to a race queues first again.
func (set *Set) await(ctx context.Context, first bool, tried []*server) error {
	w := &waiter{ch: make(chan struct{}, 1), tried: slices.Clone(tried)}
	ch := w.ch
	set.mu.Lock()
	if set.closed {
		set.mu.Unlock()
		return ErrClosed
	}
	if first {
		set.waiters = slices.Insert(set.waiters, 0, w)
	} else {
		set.waiters = append(set.waiters, w)
	}
	set.nwait.Add(1)
	set.mu.Unlock()
	// A slot may have freed between the pick and the queueing.
	set.wake()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	case <-set.done:
		return ErrClosed
	}
	set.mu.Lock()
	i := slices.Index(set.waiters, w)
	if i >= 0 {
		set.waiters = slices.Delete(set.waiters, i, i+1)
		set.nwait.Add(-1)
	}
	set.mu.Unlock()
	if i < 0 { // woken as ctx ended: pass the turn on
		set.wake()
	}
	return ctx.Err()
}

// wake lets the oldest waiter try again when some server has room.
func (set *Set) wake() {
	if set.nwait.Load() == 0 {
		return
	}
	set.mu.Lock()
	set.wakeLocked()
	set.mu.Unlock()
}

// wakeLocked is wake with set.mu held.
func (set *Set) wakeLocked() {
	for i, w := range set.waiters {
		if set.hasRoom(w.tried) {
			set.waiters = slices.Delete(set.waiters, i, i+1)
			set.nwait.Add(-1)
			w.ch <- struct{}{}
			return
		}
	}
}

// waiter is a caller waiting under MaxSessions.
type waiter struct {
	ch    chan struct{} // cap 1: woken once
	tried []*server     // servers it tried: their room is not its room
}

// hasRoom reports whether a healthy server not in tried is below
// MaxSessions, or none is left (so that the caller fails at once).
func (set *Set) hasRoom(tried []*server) bool {
	v := set.view.Load()
	left := false
	for _, sv := range v.up {
		if slices.Contains(tried, sv) {
			continue
		}
		if sv.active.Load() < int64(set.s.MaxSessions) {
			return true
		}
		left = true
	}
	return !left // nothing healthy left to try: let it fail at once
}

func (set *Set) isClosed() bool {
	select {
	case <-set.done:
		return true
	default:
		return false
	}
}

// Close stops the checkers and the resolver, fails waiting callers with
// ErrClosed, and closes every server's pool (in-use conns are closed at
// their release), then waits for all of it. Safe to call twice; it
// returns nil.
func (set *Set) Close() error {
	set.mu.Lock()
	if !set.closed {
		set.closed = true
		close(set.done)
		for _, sv := range set.servers {
			sv.stopLocked()
			set.closePool(sv)
		}
		for _, sv := range set.draining {
			set.closePool(sv) // summed from set.closing from now on
		}
		set.draining = nil
		set.waiters = nil
		set.nwait.Store(0)
	}
	set.mu.Unlock()
	set.wg.Wait()
	return nil
}

// clientIP returns a client's IP address, or the zero Addr.
func clientIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case interface{ AddrPort() netip.AddrPort }:
		return a.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// byAddr orders servers by address, then by the entry they came from.
func byAddr(a, b *server) int {
	if c := compareAddr(a.addr, b.addr); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// compareAddr orders "ip:port" strings by address, then port.
func compareAddr(a, b string) int {
	pa, ea := netip.ParseAddrPort(a)
	pb, eb := netip.ParseAddrPort(b)
	if ea != nil || eb != nil {
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	}
	return pa.Compare(pb)
}

// sleep waits d or until Close; it reports false on Close.
func (set *Set) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-set.done:
		return false
	}
}
