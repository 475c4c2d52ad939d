package main

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/relaykit/relay/balance"
)

// liveFlags are the flags a reload applies; every other one needs a
// restart. -config is where the values come from, not one of them.
// -route is live for the servers of the routes running (by their names);
// a route added or removed needs a restart.
var liveFlags = map[string]bool{"upstream": true, "balance": true, "route": true, "config": true}

// namedSet is a route's balance.Set: defaultRoute for -upstream's, else
// the route's names (route.key).
type namedSet struct {
	name string
	set  *balance.Set
}

// reloader applies a configuration read again to the running sets: the
// -upstream list, each running -route's servers and -balance, through
// balance.Set.Update, which drains a removed server (its live sessions
// finish) and warms a new one. Everything else stays as it was at start.
type reloader struct {
	args []string // the command line, as given
	log  *slog.Logger
	sets []namedSet // the default's first, when there is one; then the routes'
	demo string     // the demo upstream's address; "" when there is none

	// running is the configuration in effect: the start's, with the
	// upstreams, the policy and their values replaced by each reload
	// that applied. Only the reload actor's goroutine touches it.
	running *config
}

// loop reloads on each receive from trigger, until stop is closed. It
// is the reload actor's execute; a nil trigger never fires.
func (r *reloader) loop(trigger <-chan os.Signal, stop <-chan struct{}) error {
	// A reload's name lookups end with the actor, not after their own
	// timeout, so that a reload never holds up shutdown.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-trigger:
			r.reload(ctx)
		case <-stop:
			return nil
		}
	}
}

// reload reads the configuration again, as at start: the command line,
// then the environment, then the -config file, all validated. An invalid
// one is logged at Error and changes nothing; a valid one has its
// -upstream and -balance applied, and a change to any other flag logged
// at Warn and left for a restart.
func (r *reloader) reload(ctx context.Context) {
	next, err := parseConfig(r.args, io.Discard)
	if err != nil {
		r.log.Error("relay reload refused; keeping the running configuration", "err", err)
		return
	}
	var restart []string
	for _, name := range slices.Sorted(maps.Keys(next.values)) {
		if !liveFlags[name] && next.values[name] != r.running.values[name] {
			restart = append(restart, "-"+name)
		}
	}

	var def *balance.Set
	if len(r.sets) > 0 && r.sets[0].name == defaultRoute {
		def = r.sets[0].set
	}
	servers, upstreamValue := next.upstreams, next.values["upstream"]
	switch {
	case def == nil:
		// With -route and no -upstream, there is no default set to update.
		if len(servers) > 0 {
			restart = append(restart, "-upstream")
		}
		servers, upstreamValue = r.running.upstreams, r.running.values["upstream"]
	case len(servers) == 0 && r.demo == "":
		// The demo upstream starts only at start, and a default route
		// is not removed while running.
		restart = append(restart, "-upstream")
		servers, upstreamValue = r.running.upstreams, r.running.values["upstream"]
	case len(servers) == 0:
		servers = []balance.Server{{Addr: r.demo, Weight: 1}}
	}

	// Routes: those running take their new servers; one added or removed
	// needs a restart (the listener's route table is fixed), and one
	// removed keeps its servers until then.
	nextRoutes := map[string][]balance.Server{}
	for _, rt := range next.routes {
		nextRoutes[rt.key()] = rt.servers
	}
	running := map[string]route{}
	for _, rt := range r.running.routes {
		running[rt.key()] = rt
	}
	routes := slices.Clone(r.running.routes)
	routesChanged, routesRestart := false, len(next.routes) != len(r.running.routes)
	for i, rt := range routes {
		sv, ok := nextRoutes[rt.key()]
		if !ok {
			routesRestart = true
			continue
		}
		if formatServers(sv) != formatServers(rt.servers) {
			routesChanged = true
			routes[i].servers = sv
		}
	}
	for _, rt := range next.routes {
		if _, ok := running[rt.key()]; !ok {
			routesRestart = true
		}
	}
	if routesRestart {
		restart = append(restart, "-route")
	}

	for i, ns := range r.sets {
		sv := servers
		same := upstreamValue == r.running.values["upstream"]
		if ns.name != defaultRoute {
			for j, rt := range routes {
				if rt.key() == ns.name {
					sv = rt.servers
					same = formatServers(rt.servers) == formatServers(r.running.routes[j].servers)
				}
			}
		}
		if same && next.balance == r.running.balance {
			// Nothing to apply: a name lookup that fails now must not
			// refuse a reload that changed something else.
			continue
		}
		if err := ns.set.Update(ctx, sv, next.balance); err != nil {
			if i == 0 {
				r.log.Error("relay reload refused; keeping the running configuration", "err", err)
			} else {
				// The sets before this one took their new servers; the
				// running configuration stays the old one, so that the
				// next reload compares against it and applies them all.
				r.log.Error("relay reload failed part-way: the routes before this one were updated", "route", ns.name, "err", err)
			}
			return
		}
	}
	var changed []string
	if upstreamValue != r.running.values["upstream"] {
		changed = append(changed, "-upstream")
	}
	if routesChanged {
		changed = append(changed, "-route")
	}
	if next.balance != r.running.balance {
		changed = append(changed, "-balance")
	}
	if len(restart) > 0 {
		r.log.Warn("relay reload: changed flags ignored, each needs a restart",
			"flags", strings.Join(restart, ","))
	}
	r.running.upstreams = servers
	r.running.routes = routes
	r.running.balance = next.balance
	r.running.values["upstream"] = upstreamValue
	r.running.values["balance"] = next.values["balance"]
	if len(changed) == 0 {
		changed = []string{"none"}
	}
	r.log.Info("relay reloaded",
		"upstream", formatServers(servers),
		"balance", next.balance,
		"changed", strings.Join(changed, ","),
		"routes", formatRoutes(routes))
}
