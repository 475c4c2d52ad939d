package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
// Usage errors are *usageError; -h prints the usage text to stdout and
// returns nil. Logs go to stderr.
//
// run starts no goroutine that outlives it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	upstream := cfg.upstream
	var demo *demoUpstream
	if upstream == "" {
		if demo, err = listenDemo(log); err != nil {
			return err
		}
		defer demo.close()
		upstream = demo.addr()
	}

	set, err := balance.New(cfg.balanceConfig(upstream, log))
	if err != nil {
		return &usageError{err} // the set names the bad field
	}
	defer set.Close()

	ln, err := listen(ctx, "tcp", cfg.listen, cfg.clientKeepalive)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", cfg.listen, err)
	}
	if cfg.listenTLS != nil {
		ln = tls.NewListener(ln, cfg.listenTLS)
	}
	pl, err := listener.New(ln, set, cfg.listenerConfig(log))
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
		if metrics, err = newMetricsServer(mln, pl, set); err != nil {
			mln.Close()
			return err
		}
		defer metrics.stop()
	}

	// The actors. oklog/run interrupts them in the order added, each
	// interrupt returning before the next is called, so the proxy drains
	// first, while /metrics still answers and the demo upstream still
	// serves the sessions being drained.
	var g oklog.Group
	g.Add(pl.Serve, func(reason error) {
		log.Info("relay shutting down", "reason", reason, "grace", cfg.shutdownGrace)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownGrace)
		defer cancel()
		if err := pl.Shutdown(sctx); err != nil {
			log.Warn("relay shutdown: sessions cut after grace", "err", err, "sessions_active", pl.Stats().Active)
		}
		set.Close()
	})
	if metrics != nil {
		g.Add(metrics.serve, func(error) { metrics.stop() })
		log.Info("metrics listening", "addr", metrics.ln.Addr(), "paths", "/metrics /debug/pprof/")
	}
	if demo != nil {
		g.Add(demo.serve, func(error) { demo.close() })
	}
	g.Add(oklog.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))

	log.Info("relay listening",
		"addr", pl.Addr(),
		"upstream", upstream,
		"reuse", cfg.reuse,
		"protocol", cfg.protocol,
		"tls", cfg.listenTLS != nil,
		"upstream_tls", cfg.upstreamTLS != nil)
	if demo != nil {
		log.Info("demo upstream: a line echo naming the upstream conn that served you",
			"addr", upstream,
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
