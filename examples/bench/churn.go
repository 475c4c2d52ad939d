package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runChurn has cfg.Conns workers each doing, in a loop: connect, one
// request/response of cfg.Size bytes, close. A session's latency runs from
// the start of the connect to the close. Checks: every reply equals its
// request. Upstream accepts per session come from the server's counter
// over the measured window (a pooling proxy comes in below 1).
func runChurn(ctx context.Context, cfg *loadConfig, d *dialer, r *Result, errs *errorLog) {
	var ph phase
	var done atomic.Int64
	lat := newLatencies(cfg.Conns)
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, cfg.Size)
			resp := make([]byte, cfg.Size)
			for seq := uint64(0); ph.get() != phaseStop && ctx.Err() == nil; seq++ {
				fillRequest(req, w, seq)
				t := time.Now()
				if err := churnOnce(ctx, d, req, resp); err != nil {
					errs.addf("session: %w", err)
					// Do not spin on a dead target.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if ph.get() == phaseMeasure {
					lat.add(w, time.Since(t))
					done.Add(1)
				}
			}
		}()
	}

	meter := proxyMeter{pid: cfg.PID, errs: errs}
	okWarm := sleepCtx(ctx, cfg.Warmup)
	ph.set(phaseMeasure)
	st0, err0 := fetchStats(ctx, cfg.Control)
	t0 := time.Now()
	meter.begin()
	ok := okWarm && sleepCtx(ctx, cfg.Duration)
	ph.set(phaseStop)
	n := done.Load()
	elapsed := time.Since(t0)
	cpu, haveCPU := meter.end()
	st1, err1 := fetchStats(ctx, cfg.Control)
	wg.Wait()
	if !ok {
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}
	if err := errors.Join(err0, err1); err != nil {
		errs.add(err)
		return
	}

	s0, s1 := st0.Servers[cfg.Server], st1.Servers[cfg.Server]
	r.Seconds = elapsed.Seconds()
	r.Checks = fmt.Sprintf("%d sessions, each reply equal to its request", n)
	r.Metrics["sessions"] = float64(n)
	r.Metrics["sessions_per_s"] = float64(n) / elapsed.Seconds()
	p := lat.percentiles(0.50, 0.99)
	r.Metrics["p50_us"], r.Metrics["p99_us"] = p[0], p[1]
	accepts := s1.Accepts - s0.Accepts
	r.Metrics["upstream_accepts"] = float64(accepts)
	if n > 0 {
		r.Metrics["accepts_per_session"] = float64(accepts) / float64(n)
	}
	if hs := s1.Handshakes - s0.Handshakes; hs > 0 {
		r.Metrics["tls_resumed_share"] = float64(s1.Resumed-s0.Resumed) / float64(hs)
		r.Metrics["tls_mlkem_share"] = float64(s1.MLKEM-s0.MLKEM) / float64(hs)
	}
	if haveCPU {
		r.Metrics["proxy_cpu_s"] = cpu
		if n > 0 {
			r.Metrics["cpu_ms_per_1000"] = cpu * 1e3 / (float64(n) / 1000)
		}
	}
}

// churnOnce is one short session: connect, exchange, close.
func churnOnce(ctx context.Context, d *dialer, req, resp []byte) error {
	c, err := d.dial(ctx)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.SetDeadline(time.Now().Add(d.timeout))
	err = exchange(c, req, resp)
	if cerr := c.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}
