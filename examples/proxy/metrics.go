package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// statsCollector exports a ProxyListener's Stats (and its pool's) at
// scrape time: the counters live in the library, not in Prometheus
// objects updated on the hot path.
type statsCollector struct {
	stats func() listener.Stats

	sessionsActive, sessionsTotal, bytesTotal, failuresTotal, acceptErrors *prometheus.Desc

	poolConns, poolWaiting, poolDials, poolDialErrors, poolHandouts *prometheus.Desc
	poolCloses, poolWaits, poolWaitSeconds                          *prometheus.Desc
}

func newStatsCollector(stats func() listener.Stats) *statsCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("relay_"+name, help, labels, nil)
	}
	return &statsCollector{
		stats:           stats,
		sessionsActive:  d("sessions_active", "Sessions in progress."),
		sessionsTotal:   d("sessions_total", "Connections accepted."),
		bytesTotal:      d("bytes_total", "Bytes delivered by ended sessions, by direction.", "direction"),
		failuresTotal:   d("session_failures_total", "Sessions that did not end cleanly, by kind.", "kind"),
		acceptErrors:    d("accept_errors_total", "Temporary accept errors retried."),
		poolConns:       d("pool_conns", "Upstream connections open, by state.", "state"),
		poolWaiting:     d("pool_waiting", "Callers waiting for an upstream connection under -max-open."),
		poolDials:       d("pool_dials_total", "Upstream dials attempted."),
		poolDialErrors:  d("pool_dial_errors_total", "Upstream dials that failed."),
		poolHandouts:    d("pool_handouts_total", "Upstream connections handed out, by source.", "source"),
		poolCloses:      d("pool_closes_total", "Upstream connections closed, by reason.", "reason"),
		poolWaits:       d("pool_waits_total", "Hand-outs that had to wait under -max-open."),
		poolWaitSeconds: d("pool_wait_seconds_total", "Time spent waiting under -max-open."),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.sessionsActive, c.sessionsTotal, c.bytesTotal, c.failuresTotal, c.acceptErrors,
		c.poolConns, c.poolWaiting, c.poolDials, c.poolDialErrors, c.poolHandouts,
		c.poolCloses, c.poolWaits, c.poolWaitSeconds,
	} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	p := &s.Pool
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}

	gauge(c.sessionsActive, float64(s.Active))
	counter(c.sessionsTotal, float64(s.Sessions))
	counter(c.bytesTotal, float64(s.BytesToUpstream), "to_upstream")
	counter(c.bytesTotal, float64(s.BytesToClient), "to_client")
	counter(c.failuresTotal, float64(s.UpstreamFailures), "no_upstream")
	counter(c.failuresTotal, float64(s.SessionErrors), "error")
	counter(c.failuresTotal, float64(s.IdleTimeouts), "idle_timeout")
	counter(c.failuresTotal, float64(s.Interrupted), "interrupted")
	counter(c.acceptErrors, float64(s.AcceptErrors))

	gauge(c.poolConns, float64(p.IdleFresh), "idle_fresh")
	gauge(c.poolConns, float64(p.IdleUsed), "idle_used")
	gauge(c.poolConns, float64(p.InUse), "in_use")
	gauge(c.poolWaiting, float64(p.Waiting))
	counter(c.poolDials, float64(p.Dials))
	counter(c.poolDialErrors, float64(p.DialErrors))
	counter(c.poolHandouts, float64(p.GetReused), "reused")
	counter(c.poolHandouts, float64(p.GetSpare), "spare")
	counter(c.poolHandouts, float64(p.GetDial), "dial")
	for o := pool.ClosedNotClean; o <= pool.ClosedPoolClosed; o++ {
		counter(c.poolCloses, float64(p.Closed[o]), closeReason(o))
	}
	counter(c.poolWaits, float64(p.WaitCount))
	counter(c.poolWaitSeconds, p.WaitDuration.Seconds())
}

// closeReason is the label for a closing Outcome: "closed-not-clean"
// becomes "not_clean", in the style of the other label values.
func closeReason(o pool.Outcome) string {
	return strings.ReplaceAll(strings.TrimPrefix(o.String(), "closed-"), "-", "_")
}

// metricsServer serves /metrics from a registry of its own (never the
// global default one) and /debug/pprof/ on a mux of its own.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

func newMetricsServer(ln net.Listener, pl *listener.ProxyListener, set *balance.Set) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		newStatsCollector(pl.Stats),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &metricsServer{
		ln:  ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
	}, nil
}

// serve runs until stop; it returns nil after stop and the error otherwise.
func (m *metricsServer) serve() error {
	if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// stop lets in-flight scrapes finish for a few seconds (a CPU profile can
// run longer), then closes the rest. Safe to call before serve and twice.
func (m *metricsServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	m.ln.Close() // in case serve never ran
}
