package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// The front door: what the proxy does with a client before it takes an
// upstream. SNI routing (-route, -peek-timeout), access rules (-allow,
// -deny, -max-sessions-per-ip), the PROXY protocol towards the upstream
// (-send-proxy) and from a load balancer in front (-accept-proxy,
// -accept-proxy-others; see proxyproto.go).

// route is one -route: TLS server names and the servers they go to.
type route struct {
	names   []string // lower case, as given otherwise ("*.example.com")
	servers []balance.Server
}

// key names the route in logs, metrics and reloads: its names, as given,
// comma-separated.
func (r route) key() string { return strings.Join(r.names, ",") }

// routesValue is -route, repeatable: each Set appends one route,
// "NAME[,NAME...]=UPSTREAMS", or several separated by ';' (which is how
// RELAY_ROUTE, one variable, carries more than one). A NAME is a host
// name or a one-label wildcard "*.suffix"; UPSTREAMS has -upstream's
// syntax. A name routed twice is an error, and so is a route named
// "default" alone (defaultRoute, -upstream's).
type routesValue struct{ r *[]route }

func (v routesValue) String() string {
	if v.r == nil {
		return ""
	}
	return formatRoutes(*v.r)
}

func (v routesValue) Set(s string) error {
	list := *v.r
	seen := map[string]bool{}
	for _, r := range list {
		for _, n := range r.names {
			seen[n] = true
		}
	}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			return errors.New("empty route (want NAME[,NAME...]=host:port[@weight],...)")
		}
		names, ups, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q: want NAME[,NAME...]=host:port[@weight],...", part)
		}
		var r route
		for n := range strings.SplitSeq(names, ",") {
			n, err := listener.RouteName(strings.TrimSpace(n))
			if err != nil {
				return fmt.Errorf("%q: %w", part, err)
			}
			if seen[n] {
				return fmt.Errorf("%q: name %q routed twice", part, n)
			}
			seen[n] = true
			r.names = append(r.names, n)
		}
		if r.key() == defaultRoute {
			// The -upstream set goes by that name in metrics, on the
			// status page and in reloads; a route by it would be taken
			// for it.
			return fmt.Errorf("%q: the route name %q is -upstream's", part, defaultRoute)
		}
		if strings.TrimSpace(ups) == "" {
			return fmt.Errorf("%q: no upstream", part)
		}
		if err := (upstreamsValue{&r.servers}).Set(ups); err != nil {
			return fmt.Errorf("%q: %w", part, err)
		}
		list = append(list, r)
	}
	*v.r = list
	return nil
}

// formatRoutes prints routes as -route takes them, ';'-separated.
func formatRoutes(list []route) string {
	parts := make([]string, len(list))
	for i, r := range list {
		parts[i] = r.key() + "=" + formatServers(r.servers)
	}
	return strings.Join(parts, ";")
}

// prefixesValue is a comma-separated list of IP prefixes; a bare address
// is a prefix of its own (/32 or /128). Empty is nil.
type prefixesValue struct{ p *[]netip.Prefix }

func (v prefixesValue) String() string {
	if v.p == nil {
		return ""
	}
	parts := make([]string, len(*v.p))
	for i, p := range *v.p {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (v prefixesValue) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		*v.p = nil
		return nil
	}
	var out []netip.Prefix
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return errors.New("empty element (want a comma-separated list of addresses or CIDR prefixes)")
		}
		var p netip.Prefix
		if strings.Contains(elem, "/") {
			var err error
			if p, err = netip.ParsePrefix(elem); err != nil {
				return fmt.Errorf("%q: not a CIDR prefix (e.g. 10.0.0.0/8, fd00::/8)", elem)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			p = p.Masked()
		} else {
			a, err := netip.ParseAddr(elem)
			if err != nil {
				return fmt.Errorf("%q: not an IP address or CIDR prefix", elem)
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	*v.p = out
	return nil
}

// sendProxyValue is -send-proxy: "" (off), v1 or v2.
type sendProxyValue struct{ v *listener.ProxyHeader }

func (v sendProxyValue) String() string {
	if v.v == nil || *v.v == listener.ProxyNone {
		return ""
	}
	return v.v.String()
}

func (v sendProxyValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none", "off":
		*v.v = listener.ProxyNone
	case "v1", "1":
		*v.v = listener.ProxyV1
	case "v2", "2":
		*v.v = listener.ProxyV2
	default:
		return errors.New("want v1 or v2 (empty: off)")
	}
	return nil
}

// othersValue is -accept-proxy-others: plain (false) or refuse (true).
type othersValue struct{ refuse *bool }

func (v othersValue) String() string {
	if v.refuse != nil && *v.refuse {
		return "refuse"
	}
	return "plain"
}

func (v othersValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "plain":
		*v.refuse = false
	case "refuse":
		*v.refuse = true
	default:
		return errors.New("want plain or refuse")
	}
	return nil
}

// checkFrontDoor applies the front door's rules between flags. It runs
// after checkReuse (which settles -reuse) and the TLS flags.
func (c *config) checkFrontDoor(set map[string]bool) error {
	switch {
	case len(c.routes) > 0 && c.listenTLS != nil:
		return &usageError{errors.New("flags -route and -tls-cert exclude each other: -route picks an upstream by the server name of a TLS client's hello " +
			"without terminating TLS, -tls-cert terminates it")}
	case set["peek-timeout"] && len(c.routes) == 0:
		return &usageError{errors.New("flag -peek-timeout needs -route")}
	case c.sendProxy != listener.ProxyNone && c.reuse != pool.ReuseNever:
		why := ""
		if !set["reuse"] {
			why = fmt.Sprintf(" (selected by -protocol %s)", c.protocol)
			if c.protocol == protocolNone {
				why = " (selected by -fence-send)"
			}
		}
		return &usageError{fmt.Errorf("flag -send-proxy %s needs -reuse never, got -reuse %s%s: an upstream conn that carried a client's "+
			"PROXY header belongs to that client", c.sendProxy, c.reuse, why)}
	case set["accept-proxy-others"] && len(c.acceptProxy) == 0:
		return &usageError{errors.New("flag -accept-proxy-others needs -accept-proxy")}
	case len(c.acceptProxy) > 0 && !acceptProxySupported:
		return &usageError{errors.New("flag -accept-proxy is not supported on this platform (it peeks at the socket with MSG_PEEK, a unix call)")}
	}
	return nil
}

// defaultRoute names the -upstream set in metrics and on the status page.
const defaultRoute = "default"
