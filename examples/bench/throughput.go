package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// runThroughput moves bulk data through cfg.Conns streams, one direction:
// c2u writes into the sink, u2c reads the source's stream. The rate is
// taken at the receiving end (the sink's counter, or the clients' reads)
// over the measured window. Checks: c2u, the sink received exactly what
// the clients wrote, in total; u2c, every byte read matches the source's
// stream at its offset, and the source wrote at least what was read.
func runThroughput(ctx context.Context, cfg *loadConfig, d *dialer, r *Result, errs *errorLog) {
	c2u := cfg.Dir == "c2u"
	st0, err := fetchStats(ctx, cfg.Control)
	if err != nil {
		errs.add(err)
		return
	}
	srv0 := st0.Servers[cfg.Server]

	conns := d.dialAll(ctx, cfg.Conns, errs)
	defer func() { closeAll(conns) }() // conns is nil once closed below
	if len(conns) == 0 {
		return
	}

	var ph phase
	moved := make([]atomic.Int64, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		if c2u {
			go func() { defer wg.Done(); streamWriter(c, &moved[i], &ph, errs) }()
		} else {
			go func() { defer wg.Done(); streamReader(c, i, &moved[i], &ph, errs) }()
		}
	}
	received := func() (int64, error) {
		if c2u {
			st, err := fetchStats(ctx, cfg.Control)
			return st.Servers[cfg.Server].BytesIn, err
		}
		var n int64
		for i := range moved {
			n += moved[i].Load()
		}
		return n, nil
	}
	stop := func() {
		ph.set(phaseStop)
		for _, c := range conns {
			c.SetDeadline(time.Now())
		}
		wg.Wait()
	}

	meter := proxyMeter{pid: cfg.PID, errs: errs}
	if !sleepCtx(ctx, cfg.Warmup) {
		stop()
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}
	ph.set(phaseMeasure)
	b0, err0 := received()
	t0 := time.Now()
	meter.begin()
	ok := sleepCtx(ctx, cfg.Duration)
	b1, err1 := received()
	elapsed := time.Since(t0)
	cpu, haveCPU := meter.end()
	stop()
	if !ok {
		errs.add(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
		return
	}
	if err := errors.Join(err0, err1); err != nil {
		errs.add(err)
		return
	}

	var sent int64
	for i := range moved {
		sent += moved[i].Load()
	}
	if c2u {
		for _, c := range conns {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		}
		// Everything written must reach the sink, and nothing else.
		// Wait while the count still moves (bytes in flight), up to 10s.
		got := int64(-1)
		deadline := time.Now().Add(10 * time.Second)
		lastMove := time.Now()
		for time.Now().Before(deadline) && time.Since(lastMove) < time.Second && ctx.Err() == nil {
			st, err := fetchStats(ctx, cfg.Control)
			if err != nil {
				errs.add(err)
				break
			}
			n := st.Servers[cfg.Server].BytesIn - srv0.BytesIn
			if n != got {
				got, lastMove = n, time.Now()
			}
			if got >= sent {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got != sent {
			errs.addf("sink received %d bytes; clients wrote %d", got, sent)
		}
		r.Checks = fmt.Sprintf("sink received exactly the %d bytes the clients wrote", sent)
	} else {
		closeAll(conns)
		conns = nil
		// The source counts a Write when it returns, and a Write the
		// clients already read part of returns when the proxy lets go of
		// the upstream: wait for that, up to 5s.
		wrote := int64(-1)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			st, err := fetchStats(ctx, cfg.Control)
			if err != nil {
				errs.add(err)
				break
			}
			if wrote = st.Servers[cfg.Server].BytesOut - srv0.BytesOut; wrote >= sent {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if wrote < sent {
			errs.addf("clients read %d bytes; source wrote only %d", sent, wrote)
		}
		r.Checks = fmt.Sprintf("all %d bytes read matched the source's stream; source wrote at least as many", sent)
	}

	bytesMoved := b1 - b0
	r.Seconds = elapsed.Seconds()
	r.Metrics["bytes"] = float64(bytesMoved)
	r.Metrics["gbps"] = float64(bytesMoved) / 1e9 / elapsed.Seconds()
	if haveCPU {
		r.Metrics["proxy_cpu_s"] = cpu
		if bytesMoved > 0 {
			r.Metrics["cpu_s_per_gb"] = cpu / (float64(bytesMoved) / 1e9)
		}
	}
}

// streamWriter writes the pattern until the phase is stop (whose deadline
// ends a blocked Write), adding what the kernel took to moved.
func streamWriter(c net.Conn, moved *atomic.Int64, ph *phase, errs *errorLog) {
	buf := patternChunk(0, ioBufSize)
	for ph.get() != phaseStop {
		n, err := c.Write(buf)
		moved.Add(int64(n))
		if err != nil {
			if ph.get() != phaseStop {
				errs.addf("write: %w", err)
			}
			return
		}
	}
}

// streamReader reads until stop, checking every byte against the source's
// stream from offset 0.
func streamReader(c net.Conn, id int, moved *atomic.Int64, ph *phase, errs *errorLog) {
	buf := make([]byte, ioBufSize)
	var off int64
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], patternChunk(off, n)) {
				errs.addf("stream %d: content differs from the source's stream near offset %d", id, off)
				return
			}
			off += int64(n)
			moved.Add(int64(n))
		}
		if err != nil {
			if ph.get() != phaseStop {
				errs.addf("stream %d: read after %d bytes: %w", id, off, err)
			}
			return
		}
	}
}
