package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// idleOpeners is how many goroutines open (and later check) idle sessions.
const idleOpeners = 32

// runIdle holds cfg.Conns idle sessions, each after one exchange so the
// proxy has really connected upstream, and reads the proxy's RSS and fd
// count against a baseline taken before. Checks: the first exchange and a
// second one after the reading (the proxy still carries every session).
func runIdle(ctx context.Context, cfg *loadConfig, d *dialer, r *Result, errs *errorLog) {
	req := make([]byte, cfg.Size)
	resp := make([]byte, cfg.Size)
	// Warm-up: a few whole sessions, so lazy set-up is not billed per session.
	for i := range 32 {
		fillRequest(req, 0, uint64(i))
		if err := churnOnce(ctx, d, req, resp); err != nil {
			errs.addf("warm-up session: %w", err)
		}
	}
	if !sleepCtx(ctx, min(cfg.Warmup, 500*time.Millisecond)) {
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}
	var base procSample
	if cfg.PID != 0 {
		s, err := sampleTree(cfg.PID, true)
		if err != nil {
			errs.add(err)
			return
		}
		base = s
	}
	st0, err := fetchStats(ctx, cfg.Control)
	if err != nil {
		errs.add(err)
		return
	}

	conns := make([]net.Conn, cfg.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// A target that fails many sessions (each costing a timeout) is not
	// worth waiting out: give up on the rest.
	const maxErrors = 64
	var skipped atomic.Int64
	t0 := time.Now()
	forEachParallel(cfg.Conns, func(i int) {
		if errs.n.Load() >= maxErrors || ctx.Err() != nil {
			skipped.Add(1)
			return
		}
		c, err := d.dial(ctx)
		if err != nil {
			errs.addf("session %d: dial: %w", i, err)
			return
		}
		c.SetDeadline(time.Now().Add(d.timeout))
		req := make([]byte, cfg.Size)
		resp := make([]byte, cfg.Size)
		fillRequest(req, i, 0)
		if err := exchange(c, req, resp); err != nil {
			errs.addf("session %d: %w", i, err)
			c.Close()
			return
		}
		c.SetDeadline(time.Time{})
		conns[i] = c
	})
	openTime := time.Since(t0)
	if n := skipped.Load(); n > 0 {
		errs.addf("gave up after %d errors: %d sessions not tried", maxErrors, n)
	}
	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	if !sleepCtx(ctx, cfg.Settle) {
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}
	var held procSample
	if cfg.PID != 0 {
		s, err := sampleTree(cfg.PID, true)
		if err != nil {
			errs.add(err)
			return
		}
		held = s
	}
	st1, err := fetchStats(ctx, cfg.Control)
	if err != nil {
		errs.add(err)
	}

	// Every held session must still work.
	forEachParallel(cfg.Conns, func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		c.SetDeadline(time.Now().Add(d.timeout))
		req := make([]byte, cfg.Size)
		resp := make([]byte, cfg.Size)
		fillRequest(req, i, 1)
		if err := exchange(c, req, resp); err != nil {
			errs.addf("session %d after idling: %w", i, err)
		}
	})

	r.Seconds = openTime.Seconds()
	r.Checks = fmt.Sprintf("%d sessions held, each echoed before and after the reading", open)
	r.Metrics["sessions"] = float64(open)
	r.Metrics["upstream_open"] = float64(st1.Servers[cfg.Server].Open - st0.Servers[cfg.Server].Open)
	if cfg.PID != 0 && open > 0 {
		per := func(a, b int64) float64 { return float64(a-b) / float64(open) }
		r.Metrics["base_rss_kib"] = float64(base.RSSKiB)
		r.Metrics["base_fds"] = float64(base.FDs)
		r.Metrics["procs"] = float64(held.Procs)
		r.Metrics["rss_kib_per_session"] = per(held.RSSKiB, base.RSSKiB)
		r.Metrics["pss_kib_per_session"] = per(held.PssKiB, base.PssKiB)
		r.Metrics["fds_per_session"] = per(int64(held.FDs), int64(base.FDs))
	}
}

// forEachParallel calls f(i) for i in [0, n) on idleOpeners goroutines
// and returns when all calls have.
func forEachParallel(n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(idleOpeners, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
