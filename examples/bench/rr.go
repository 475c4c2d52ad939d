package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runRR plays request/response ping-pong on cfg.Conns kept connections to
// the echo server: each sends cfg.Size bytes unique to (conn, sequence)
// and waits for them back. Check: every reply equals its request.
func runRR(ctx context.Context, cfg *loadConfig, d *dialer, r *Result, errs *errorLog) {
	conns := d.dialAll(ctx, cfg.Conns, errs)
	defer closeAll(conns)
	for _, c := range conns {
		// One deadline for the whole run instead of a timer per request:
		// a proxy that stops answering ends the run, bounded.
		c.SetDeadline(time.Now().Add(cfg.Warmup + cfg.Duration + 10*time.Second))
	}
	if len(conns) == 0 {
		return
	}

	var ph phase
	var done atomic.Int64 // requests completed in the measure phase
	lat := newLatencies(len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, cfg.Size)
			resp := make([]byte, cfg.Size)
			for seq := uint64(0); ph.get() != phaseStop; seq++ {
				fillRequest(req, i, seq)
				t := time.Now()
				if err := exchange(c, req, resp); err != nil {
					errs.addf("conn %d request %d: %w", i, seq, err)
					return
				}
				if ph.get() == phaseMeasure {
					lat.add(i, time.Since(t))
					done.Add(1)
				}
			}
		}()
	}

	meter := proxyMeter{pid: cfg.PID, errs: errs}
	okWarm := sleepCtx(ctx, cfg.Warmup)
	ph.set(phaseMeasure)
	t0 := time.Now()
	meter.begin()
	ok := okWarm && sleepCtx(ctx, cfg.Duration)
	ph.set(phaseStop)
	n := done.Load()
	elapsed := time.Since(t0)
	cpu, haveCPU := meter.end()
	wg.Wait()
	if !ok {
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}

	r.Seconds = elapsed.Seconds()
	r.Checks = fmt.Sprintf("%d replies equal to their requests", n)
	r.Metrics["requests"] = float64(n)
	r.Metrics["req_per_s"] = float64(n) / elapsed.Seconds()
	p := lat.percentiles(0.50, 0.99, 0.999)
	r.Metrics["p50_us"], r.Metrics["p99_us"], r.Metrics["p999_us"] = p[0], p[1], p[2]
	if haveCPU {
		r.Metrics["proxy_cpu_s"] = cpu
		if n > 0 {
			r.Metrics["cpu_us_per_req"] = cpu * 1e6 / float64(n)
		}
	}
}
