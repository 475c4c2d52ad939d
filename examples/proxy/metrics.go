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
	refusedTotal, peekFailures                                             *prometheus.Desc

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
		refusedTotal:    d("refused_total", "Clients closed before an upstream was taken, by reason: denied (-allow/-deny), per_ip_limit (-max-sessions-per-ip), no_route (-route without a default).", "reason"),
		peekFailures:    d("peek_failures_total", "Clients closed because their TLS ClientHello could not be read (-route)."),
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
		c.refusedTotal, c.peekFailures, c.poolConns, c.poolWaiting, c.poolDials, c.poolDialErrors, c.poolHandouts,
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
	counter(c.refusedTotal, float64(s.Refused[listener.RefusedDenied]), "denied")
	counter(c.refusedTotal, float64(s.Refused[listener.RefusedPerIP]), "per_ip_limit")
	counter(c.refusedTotal, float64(s.Refused[listener.RefusedNoRoute]), "no_route")
	counter(c.peekFailures, float64(s.PeekFailures))

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

// serverCollector exports each balance server's health and figures at
// scrape time, from each set's Servers(): one series per server,
// labelled by the route (default for -upstream, else the route's names),
// the address dialed (server) and the configured entry it comes from
// (name). relay_no_server_total sums the sets.
type serverCollector struct {
	sets []namedSet

	up, state, weight, active, sessions, failures *prometheus.Desc
	ejections, downs, handouts, conns, noServer   *prometheus.Desc
}

func newServerCollector(sets []namedSet) *serverCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("relay_"+name, help, append([]string{"route", "server", "name"}, labels...), nil)
	}
	return &serverCollector{
		sets:      sets,
		up:        d("server_up", "1 when the server takes sessions (state up), else 0."),
		state:     d("server_state", "The server's state: 1 for the current one, 0 for the others.", "state"),
		weight:    d("server_weight", "The server's weight."),
		active:    d("server_active", "Sessions in flight on the server."),
		sessions:  d("server_sessions_total", "Sessions handed a connection to the server."),
		failures:  d("server_failures_total", "Failures counted against the server, by kind: dial (spares' too), session (reset by the server before its first byte), check (active checks).", "kind"),
		ejections: d("server_ejections_total", "Times passive detection ejected the server."),
		downs:     d("server_downs_total", "Times active checks marked the server down."),
		handouts:  d("server_handouts_total", "Connections to the server handed out, by source.", "source"),
		conns:     d("server_pool_conns", "Connections to the server open in its pool, by state.", "state"),
		noServer:  prometheus.NewDesc("relay_no_server_total", "Sessions refused because no server was left to try.", nil, nil),
	}
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.up, c.state, c.weight, c.active, c.sessions, c.failures,
		c.ejections, c.downs, c.handouts, c.conns, c.noServer,
	} {
		ch <- d
	}
}

// serverStates are the values of relay_server_state's state label.
var serverStates = [...]balance.State{balance.StateUp, balance.StateEjected, balance.StateDown, balance.StateDraining}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	var noServer uint64
	for _, ns := range c.sets {
		c.collectSet(ch, ns)
		noServer += ns.set.NoServer()
	}
	ch <- prometheus.MustNewConstMetric(c.noServer, prometheus.CounterValue, float64(noServer))
}

func (c *serverCollector) collectSet(ch chan<- prometheus.Metric, ns namedSet) {
	for _, s := range ns.set.Servers() { // each server once
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ns.name, s.Addr, s.Name}, labels...)...)
		}
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{ns.name, s.Addr, s.Name}, labels...)...)
		}
		gauge(c.up, b2f(s.State == balance.StateUp))
		for _, st := range serverStates {
			gauge(c.state, b2f(s.State == st), st.String())
		}
		gauge(c.weight, float64(s.Weight))
		gauge(c.active, float64(s.Active))
		counter(c.sessions, s.Sessions)
		counter(c.failures, s.DialFailures, "dial")
		counter(c.failures, s.Failures, "session")
		counter(c.failures, s.CheckFailures, "check")
		counter(c.ejections, s.Ejections)
		counter(c.downs, s.Downs)
		counter(c.handouts, s.Pool.GetReused, "reused")
		counter(c.handouts, s.Pool.GetSpare, "spare")
		counter(c.handouts, s.Pool.GetDial, "dial")
		gauge(c.conns, float64(s.Pool.IdleFresh), "idle_fresh")
		gauge(c.conns, float64(s.Pool.IdleUsed), "idle_used")
		gauge(c.conns, float64(s.Pool.InUse), "in_use")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsServer serves /metrics from a registry of its own (never the
// global default one), the status page at / and /debug/pprof/, on a mux
// of its own.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

func newMetricsServer(ln net.Listener, pl *listener.ProxyListener, sets []namedSet) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		newStatsCollector(pl.Stats),
		newServerCollector(sets), // the demo's, -upstream's or the routes'
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	// GET also answers HEAD; another method on / is a 405, another path
	// a 404.
	mux.Handle("GET /{$}", newStatusHandler(pl, sets, time.Now()))
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
