package balance

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// resolveTimeout bounds one host name's lookup.
const resolveTimeout = 10 * time.Second

// resolveAll turns the configured servers into members, resolving host
// names. A name that does not resolve is an error when strict; else its
// last good addresses are used (and none when it never resolved).
func (set *Set) resolveAll(ctx context.Context, list []Server, strict bool) ([]member, error) {
	var out []member
	for i, sv := range list {
		host, port, _ := net.SplitHostPort(sv.Addr) // checked by checkServers
		w := sv.Weight
		if w == 0 {
			w = 1
		}
		ips, err := set.lookup(ctx, host)
		if err != nil {
			if strict {
				return nil, fmt.Errorf("balance: Config.Servers[%d].Addr: %w", i, err)
			}
			set.mu.Lock()
			ips = set.resolved[host]
			set.mu.Unlock()
			set.s.log.Warn("balance: resolving failed; keeping the last addresses", "host", host, "err", err, "addrs", len(ips))
		}
		p, _ := strconv.ParseUint(port, 10, 16)
		for _, ip := range ips {
			out = append(out, member{
				addr:   netip.AddrPortFrom(ip, uint16(p)).String(),
				host:   host,
				name:   sv.Addr,
				weight: w,
			})
		}
	}
	return out, nil
}

// lookup resolves host (an IP stands for itself) and remembers the
// answer. The addresses come back sorted, without duplicates.
func (set *Set) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var ips []netip.Addr
	var err error
	if set.s.Resolve != nil {
		ips, err = set.s.Resolve(ctx, host)
	} else {
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	if err == nil && len(ips) == 0 {
		err = fmt.Errorf("lookup %s: no addresses", host)
	}
	if err != nil {
		return nil, err
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	if set.s.Network == "tcp4" || set.s.Network == "tcp6" {
		v4 := set.s.Network == "tcp4"
		ips = slices.DeleteFunc(ips, func(ip netip.Addr) bool { return ip.Is4() != v4 })
		if len(ips) == 0 {
			return nil, fmt.Errorf("lookup %s: no %s address", host, set.s.Network)
		}
	}
	set.mu.Lock()
	set.resolved[host] = ips
	set.mu.Unlock()
	return ips, nil
}

// startResolverLocked starts the resolver loop, once, when host names
// are configured and ResolveEvery is positive.
func (set *Set) startResolverLocked() {
	if set.resolving || set.closed || set.s.ResolveEvery <= 0 || !set.hasNamesLocked() {
		return
	}
	set.resolving = true
	set.wg.Add(1)
	go set.resolveLoop()
}

// resolveLoop resolves the host names again every ResolveEvery and
// applies what changed, until Close. With no names left (Update), it
// resolves nothing: Resolve then only applies the IPs again.
func (set *Set) resolveLoop() {
	defer set.wg.Done()
	for set.sleep(set.s.ResolveEvery) {
		set.Resolve(context.Background())
	}
}

// Resolve resolves the configured host names now, as the periodic
// resolution does: a server whose address is gone drains, a new address
// joins. A name that fails to resolve keeps its last addresses.
func (set *Set) Resolve(ctx context.Context) {
	set.mu.Lock()
	specs, names := set.specs, set.hasNamesLocked()
	set.mu.Unlock()
	if !names {
		return
	}
	members, _ := set.resolveAll(ctx, specs, false)
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.closed || !slices.Equal(specs, set.specs) { // Update won the race
		return
	}
	set.applyLocked(members, set.view.Load().policy)
}

func (set *Set) hasNamesLocked() bool {
	for _, sv := range set.specs {
		host, _, _ := net.SplitHostPort(sv.Addr)
		if _, err := netip.ParseAddr(host); err != nil {
			return true
		}
	}
	return false
}
