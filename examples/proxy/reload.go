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
var liveFlags = map[string]bool{"upstream": true, "balance": true, "config": true}

// reloader applies a configuration read again to a running set: the
// -upstream list and -balance, through balance.Set.Update, which drains
// a removed server (its live sessions finish) and warms a new one.
// Everything else stays as it was at start.
type reloader struct {
	args []string // the command line, as given
	log  *slog.Logger
	set  *balance.Set
	demo string // the demo upstream's address; "" when there is none

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

	servers, upstreamValue := next.upstreams, next.values["upstream"]
	if len(servers) == 0 {
		if r.demo == "" {
			// The demo upstream starts only at start.
			restart = append(restart, "-upstream")
			servers, upstreamValue = r.running.upstreams, r.running.values["upstream"]
		} else {
			servers = []balance.Server{{Addr: r.demo, Weight: 1}}
		}
	}
	if err := r.set.Update(ctx, servers, next.balance); err != nil {
		r.log.Error("relay reload refused; keeping the running configuration", "err", err)
		return
	}
	var changed []string
	if upstreamValue != r.running.values["upstream"] {
		changed = append(changed, "-upstream")
	}
	if next.balance != r.running.balance {
		changed = append(changed, "-balance")
	}
	if len(restart) > 0 {
		r.log.Warn("relay reload: changed flags ignored, each needs a restart",
			"flags", strings.Join(restart, ","))
	}
	r.running.upstreams = servers
	r.running.balance = next.balance
	r.running.values["upstream"] = upstreamValue
	r.running.values["balance"] = next.values["balance"]
	if len(changed) == 0 {
		changed = []string{"none"}
	}
	r.log.Info("relay reloaded",
		"upstream", formatServers(servers),
		"balance", next.balance,
		"changed", strings.Join(changed, ","))
}
