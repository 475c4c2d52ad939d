package listener

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// Access says which client addresses may connect. It is checked for each
// client before an upstream is taken; a refused client is closed at once.
// The zero value lets everyone in.
type Access struct {
	// Allow, when not empty, admits only clients in one of its prefixes.
	Allow []netip.Prefix
	// Deny refuses clients in one of its prefixes. It wins over Allow.
	Deny []netip.Prefix
}

// Permits reports whether a client at ip may connect: not denied, and
// allowed when Allow is set. A client without an IP address (the zero
// Addr: a unix socket) is refused when Allow is set, else let in. An
// IPv4 client is compared in its IPv4 form, so write IPv4 prefixes as
// such: an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) matches no one.
func (a *Access) Permits(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return len(a.Allow) == 0
	}
	if slices.ContainsFunc(a.Deny, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return false
	}
	return len(a.Allow) == 0 || slices.ContainsFunc(a.Allow, func(p netip.Prefix) bool { return p.Contains(ip) })
}

func (a *Access) empty() bool { return len(a.Allow) == 0 && len(a.Deny) == 0 }

func (a *Access) validate() error {
	for i, p := range a.Allow {
		if !p.IsValid() {
			return fmt.Errorf("listener: Config.Access.Allow[%d]: invalid prefix", i)
		}
	}
	for i, p := range a.Deny {
		if !p.IsValid() {
			return fmt.Errorf("listener: Config.Access.Deny[%d]: invalid prefix", i)
		}
	}
	return nil
}

// RefusedError reports a client closed before an upstream was taken,
// and why.
type RefusedError struct {
	Reason Refusal
}

// Error returns "listener: client refused: " and the reason.
func (e *RefusedError) Error() string { return "listener: client refused: " + e.Reason.String() }

// Refusal is why a client was refused.
type Refusal uint8

const (
	// RefusedDenied: Config.Access does not admit the client's address.
	RefusedDenied Refusal = iota + 1
	// RefusedPerIP: the client's address has Config.MaxSessionsPerIP
	// sessions already.
	RefusedPerIP
	// RefusedNoRoute: no route matched and there is no default Upstream.
	RefusedNoRoute
)

// String returns "denied", "per-ip-limit" or "no-route".
func (r Refusal) String() string {
	switch r {
	case RefusedDenied:
		return "denied"
	case RefusedPerIP:
		return "per-ip-limit"
	case RefusedNoRoute:
		return "no-route"
	}
	return "Refusal(" + strconv.Itoa(int(r)) + ")"
}

// perIP counts live sessions per client address, for MaxSessionsPerIP.
type perIP struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// take counts a session for ip, unless ip has max already.
func (p *perIP) take(ip netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[ip] >= p.max {
		return false
	}
	p.n[ip]++
	return true
}

func (p *perIP) give(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[ip]--; p.n[ip] <= 0 {
		delete(p.n, ip)
	}
}

// addrIP returns a's IP address (unmapped), or the zero Addr.
func addrIP(a net.Addr) netip.Addr { return addrPort(a).Addr() }
