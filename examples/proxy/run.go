package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"syscall"
	"time"

	oklog "github.com/oklog/run"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
)

// run is the whole program but for the process: it parses args (then
// RELAY_* environment variables, then the -config file), builds the parts
// in dependency order, and runs them as one oklog/run group until
// SIGINT, SIGTERM or ctx's end, after which it drains and returns nil.
// On SIGHUP (unix) it reads the configuration again and applies the
// upstreams and the policy (see reloader). Usage errors are *usageError;
// -h prints the usage text to stdout and returns nil. Logs go to stderr.
//
// run starts no goroutine that outlives it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, stdout, stderr, runOptions{})
}

// runOptions are run's internal knobs, for tests.
type runOptions struct {
	// reload, when not nil, triggers a reload on each receive, in place
	// of SIGHUP, which is then left alone: a test need not signal its
	// own process, where a SIGHUP that comes before the handler would
	// kill it.
	reload <-chan os.Signal
}

// runWith is run with opts.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, opts runOptions) error {
	cfg, err := parseConfig(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	// From here on, every part is closed by a defer on the way out, in
	// reverse order; the actors' interrupts close them first on the
	// normal path, and every Close is safe to call twice.
	servers := cfg.upstreams
	var demo *demoUpstream
	if len(servers) == 0 && len(cfg.routes) == 0 {
		if demo, err = listenDemo(log); err != nil {
			return err
		}
		defer demo.close()
		servers = []balance.Server{{Addr: demo.addr(), Weight: 1}}
	}

	// The sets: the default route's (-upstream; none when it is empty
	// with -route), then each route's, each with the same template.
	var sets []namedSet
	closeSets := func() {
		for _, ns := range sets {
			ns.set.Close()
		}
	}
	defer closeSets()
	var set *balance.Set
	if len(servers) > 0 {
		if set, err = balance.New(cfg.balanceConfig(servers, log)); err != nil {
			return &usageError{fmt.Errorf("-upstream: %w", err)}
		}
		sets = append(sets, namedSet{name: defaultRoute, set: set})
	}
	lcfg := cfg.listenerConfig(log)
	for _, r := range cfg.routes {
		rs, err := balance.New(cfg.routeBalanceConfig(r.servers, log))
		if err != nil {
			return &usageError{fmt.Errorf("-route %s: %w", r.key(), err)}
		}
		sets = append(sets, namedSet{name: r.key(), set: rs})
		lcfg.Routes = append(lcfg.Routes, listener.Route{Names: r.names, Upstream: rs})
	}

	ln, err := listen(ctx, "tcp", cfg.listen, cfg.clientKeepalive)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", cfg.listen, err)
	}
	if len(cfg.acceptProxy) > 0 {
		// Under TLS: the PROXY header comes before the TLS handshake.
		ln = &proxyListener{Listener: ln, trusted: cfg.acceptProxy}
		lcfg.Prepare = prepareProxy(cfg.refuseOthers)
	}
	if cfg.listenTLS != nil {
		ln = tls.NewListener(ln, cfg.listenTLS)
	}
	var def listener.Upstream // an untyped nil when there is no default
	if set != nil {
		def = set
	}
	pl, err := listener.New(ln, def, lcfg)
	if err != nil {
		ln.Close()
		return &usageError{err} // the listener names the bad field
	}
	defer pl.Close()

	var metrics *metricsServer
	if cfg.metrics != "" {
		mln, err := net.Listen("tcp", cfg.metrics)
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", cfg.metrics, err)
		}
		if metrics, err = newMetricsServer(mln, pl, sets); err != nil {
			mln.Close()
			return err
		}
		defer metrics.stop()
	}

	// The reload trigger: SIGHUP is caught from here on, before the
	// "relay listening" line, so that a SIGHUP sent after that line is
	// never the default action (which kills the process).
	trigger, how := opts.reload, "trigger"
	if trigger == nil {
		var stopNotify func()
		trigger, stopNotify = notifyReload()
		defer stopNotify()
		how = reloadHow
	}
	// The reloader's own copy: it changes the upstreams, routes, policy
	// and values on its goroutine, and cfg stays the start's.
	running := *cfg
	running.values = maps.Clone(cfg.values)
	rl := &reloader{args: args, log: log, sets: sets, running: &running}
	if demo != nil {
		rl.demo = demo.addr()
	}
	rl.running.upstreams = servers

	// The actors. oklog/run interrupts them in the order added, each
	// interrupt returning before the next is called: reloading stops
	// first, then the proxy drains, while /metrics still answers and the
	// demo upstream still serves the sessions being drained.
	var g oklog.Group
	stopReload := make(chan struct{})
	g.Add(func() error { return rl.loop(trigger, stopReload) }, func(error) { close(stopReload) })
	g.Add(pl.Serve, func(reason error) {
		log.Info("relay shutting down", "reason", reason, "grace", cfg.shutdownGrace)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownGrace)
		defer cancel()
		if err := pl.Shutdown(sctx); err != nil {
			log.Warn("relay shutdown: sessions cut after grace", "err", err, "sessions_active", pl.Stats().Active)
		}
		closeSets()
	})
	if metrics != nil {
		g.Add(metrics.serve, func(error) { metrics.stop() })
		log.Info("metrics listening", "addr", metrics.ln.Addr(), "paths", "/ /metrics /debug/pprof/")
	}
	if demo != nil {
		g.Add(demo.serve, func(error) { demo.close() })
	}
	g.Add(oklog.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))

	log.Info("relay listening",
		"addr", pl.Addr(),
		"upstream", formatServers(servers),
		"balance", cfg.balance,
		"reuse", cfg.reuse,
		"protocol", cfg.protocol,
		"tls", cfg.listenTLS != nil,
		"send_proxy", cfg.sendProxy,
		"accept_proxy", (prefixesValue{&cfg.acceptProxy}).String(),
		"upstream_tls", cfg.upstreamTLS != nil,
		"health_every", cfg.healthEvery,
		"reload", how,
		"routes", formatRoutes(cfg.routes))
	if demo != nil {
		log.Info("demo upstream: a line echo naming the upstream conn that served you",
			"addr", demo.addr(),
			"try", "echo hello | nc "+ncAddr(pl.Addr()))
	}

	start := time.Now()
	err = g.Run()
	if clean(ctx, err) {
		s := pl.Stats()
		log.Info("relay stopped", "uptime", time.Since(start).Round(time.Millisecond), "sessions", s.Sessions)
		return nil
	}
	return err
}

// clean reports whether the group ended the way a stop request ends it:
// a signal, or ctx's end.
func clean(ctx context.Context, err error) bool {
	return errors.Is(err, oklog.ErrSignal) || (ctx.Err() != nil && errors.Is(err, ctx.Err()))
}

// ncAddr is a as nc takes it ("host port"), with a wildcard host made
// loopback so that the line works as printed.
func ncAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return host + " " + port
}
