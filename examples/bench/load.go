package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig is one load run. Zero values are filled by defaults().
type loadConfig struct {
	// Mode is throughput, rr, churn or idle.
	Mode string
	// Addr is where clients connect (the proxy). Empty means the upstream
	// server itself (the direct target).
	Addr string
	// Control is the upstream's control address; Server names the
	// upstream server behind Addr (sink, source, echo, tlsecho). Empty
	// Server means the mode's usual one.
	Control, Server string
	// Dir is c2u (client to upstream, into sink) or u2c (from source).
	Dir string
	// Conns is streams (throughput), kept conns (rr), workers (churn) or
	// sessions (idle). Zero means 1, 1, 16 and 3000.
	Conns int
	// Size is the request size of rr, churn and idle. Zero means 64.
	Size int
	// Warmup runs before the measurement; Duration is measured. Zero means
	// 1s and 4s. Settle is how long idle waits before it reads the proxy.
	Warmup, Duration, Settle time.Duration
	// SessionTimeout bounds one dial and one exchange. Zero means 5s.
	SessionTimeout time.Duration
	// PID is the proxy's process (the root of its tree). Zero: no proxy
	// figures (the direct target).
	PID int
	// ClientTLS makes the clients speak TLS themselves, trusting this CA
	// file (the direct target of churn against tlsecho).
	ClientTLS string
	// ProxyHeader, v1 or v2, makes each client conn start with a PROXY
	// protocol header for its own addresses, written on its own as soon
	// as the conn is up (before TLS, with ClientTLS), as a load balancer
	// in front of a proxy with -accept-proxy would. Empty: none.
	ProxyHeader string
	// Target and Rep label the result.
	Target string
	Rep    int
}

func (c *loadConfig) defaults() error {
	if c.Control == "" {
		return errors.New("-control: required (the upstream's control address)")
	}
	if c.Server == "" {
		switch {
		case c.Mode == "throughput" && c.Dir == "u2c":
			c.Server = kindSource
		case c.Mode == "throughput":
			c.Server = kindSink
		default:
			c.Server = kindEcho
		}
	}
	switch c.Mode {
	case "throughput":
		if c.Dir == "" {
			c.Dir = "c2u"
		}
		if c.Dir != "c2u" && c.Dir != "u2c" {
			return fmt.Errorf("-dir: want c2u or u2c, got %q", c.Dir)
		}
	case "rr", "churn", "idle":
	default:
		return fmt.Errorf("-mode: want throughput, rr, churn or idle, got %q", c.Mode)
	}
	if c.Conns <= 0 {
		switch c.Mode {
		case "churn":
			c.Conns = 16
		case "idle":
			c.Conns = 3000
		default:
			c.Conns = 1
		}
	}
	if c.Size <= 0 {
		c.Size = 64
	}
	if c.Size < 24 {
		return fmt.Errorf("-size: at least 24 bytes, got %d", c.Size)
	}
	if c.Warmup <= 0 {
		c.Warmup = time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 4 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = time.Second
	}
	switch c.ProxyHeader {
	case "", "v1", "v2":
	default:
		return fmt.Errorf("-proxy-header: want v1 or v2, got %q", c.ProxyHeader)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 5 * time.Second
	}
	if c.Target == "" {
		c.Target = "direct"
	}
	return nil
}

// test is the name of the figure set, as the report knows it.
func (c *loadConfig) test() string {
	switch c.Mode {
	case "throughput":
		return fmt.Sprintf("tput-%s-%d", c.Dir, c.Conns)
	case "rr":
		return fmt.Sprintf("rr-%d", c.Conns)
	case "churn":
		if c.Server == kindTLSEcho {
			return "churn-tls"
		}
		return "churn"
	default:
		return c.Mode
	}
}

// Result is one measurement, written as one JSON line.
type Result struct {
	Target string `json:"target"`
	Rep    int    `json:"rep"`
	// Test names the figure set: tput-c2u-1, rr-32, churn-tls, idle, ...
	Test   string `json:"test"`
	Server string `json:"server"`
	Conns  int    `json:"conns"`
	// Seconds is the measured window.
	Seconds float64 `json:"seconds"`
	// Metrics holds the figures by name (see report.go for units).
	Metrics map[string]float64 `json:"metrics"`
	// Errors counts every failed operation or check; ErrorSamples holds a
	// few distinct messages.
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Checks describes what was verified, for the human reader.
	Checks string `json:"checks,omitempty"`
}

// errorLog counts errors and keeps a few distinct messages. Safe for
// concurrent use.
type errorLog struct {
	n       atomic.Int64
	mu      sync.Mutex
	samples []string
}

func (e *errorLog) add(err error) {
	e.n.Add(1)
	msg := err.Error()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.samples) < 5 && !slices.Contains(e.samples, msg) {
		e.samples = append(e.samples, msg)
	}
}

func (e *errorLog) addf(format string, args ...any) { e.add(fmt.Errorf(format, args...)) }

// phase is the shared clock of a timed run: warm-up, measuring, stopping.
type phase struct{ v atomic.Int32 }

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

func (p *phase) get() int32  { return p.v.Load() }
func (p *phase) set(v int32) { p.v.Store(v) }

// latencies collects per-worker samples in the measure phase, up to a cap
// per worker (so memory stays bounded on fast targets).
type latencies struct {
	perWorker [][]time.Duration
	cap       int
}

func newLatencies(workers int) *latencies {
	return &latencies{perWorker: make([][]time.Duration, workers), cap: max(1<<22/workers, 1024)}
}

func (l *latencies) add(w int, d time.Duration) {
	if len(l.perWorker[w]) < l.cap {
		l.perWorker[w] = append(l.perWorker[w], d)
	}
}

// percentiles returns the given quantiles in microseconds.
func (l *latencies) percentiles(qs ...float64) []float64 {
	var all []time.Duration
	for _, s := range l.perWorker {
		all = append(all, s...)
	}
	out := make([]float64, len(qs))
	if len(all) == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, q := range qs {
		k := int(math.Ceil(q*float64(len(all)))) - 1
		k = min(max(k, 0), len(all)-1)
		out[i] = float64(all[k]) / float64(time.Microsecond)
	}
	return out
}

// proxyMeter reads the proxy's CPU at the edges of the measured window.
// With PID 0 it does nothing and reports ok=false.
type proxyMeter struct {
	pid   int
	start procSample
	errs  *errorLog
}

func (m *proxyMeter) begin() {
	if m.pid == 0 {
		return
	}
	s, err := sampleTree(m.pid, false)
	if err != nil {
		m.errs.add(err)
	}
	m.start = s
}

// end returns the proxy's CPU seconds since begin.
func (m *proxyMeter) end() (float64, bool) {
	if m.pid == 0 {
		return 0, false
	}
	s, err := sampleTree(m.pid, false)
	if err != nil {
		m.errs.add(err)
		return 0, false
	}
	return (s.CPU - m.start.CPU).Seconds(), true
}

// dialer makes client connections to the target, in plain TCP or, with
// ClientTLS, TLS with a shared session cache (so it resumes, as a proxy
// that originates TLS would); with proxyHeader, each starts with a PROXY
// header (see loadConfig.ProxyHeader).
type dialer struct {
	addr        string
	tls         *tls.Config
	timeout     time.Duration // bounds the dial, the handshake, and an exchange
	nd          net.Dialer
	proxyHeader string
}

func newDialer(addr, caFile string, timeout time.Duration) (*dialer, error) {
	d := &dialer{addr: addr, timeout: timeout, nd: net.Dialer{Timeout: timeout}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading -client-tls CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-client-tls %s: no certificate found", caFile)
		}
		d.tls = &tls.Config{RootCAs: pool, ServerName: tlsServerName, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	}
	return d, nil
}

func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	c, err := d.nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	if d.proxyHeader != "" {
		var hdr [64]byte
		b, err := appendProxyHeader(hdr[:0], d.proxyHeader, c.LocalAddr(), c.RemoteAddr())
		if err == nil {
			c.SetWriteDeadline(time.Now().Add(d.timeout))
			_, err = c.Write(b)
			c.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("writing the PROXY header: %w", err)
		}
	}
	if d.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, d.tls)
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// dialAll dials n conns, counting each failed dial in errs, and returns
// those it got.
func (d *dialer) dialAll(ctx context.Context, n int, errs *errorLog) []net.Conn {
	var conns []net.Conn
	for range n {
		c, err := d.dial(ctx)
		if err != nil {
			errs.addf("dial: %w", err)
			continue
		}
		conns = append(conns, c)
	}
	return conns
}

// closeAll closes every conn of conns.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// fillRequest writes a request unique to (worker, seq) into b: an id
// header then filler that depends on it, so any mix-up of replies between
// connections, or of order within one, fails the comparison.
func fillRequest(b []byte, worker int, seq uint64) {
	n := copy(b, fmt.Sprintf("w%05d s%012d|", worker, seq))
	x := uint32(worker)*2654435761 + uint32(seq)*40503 + 1
	for i := n; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
}

// exchange writes req and reads len(req) bytes into resp, comparing them.
func exchange(c net.Conn, req, resp []byte) error {
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if string(req) != string(resp) {
		return fmt.Errorf("echo mismatch: sent %.20q, got %.20q", req, resp)
	}
	return nil
}

// sleepCtx sleeps for d or until ctx ends, reporting whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Load runs one measurement as configured. It returns an error only when
// the run could not be set up (bad flags, no control port); failures while
// running are counted in Result.Errors.
func Load(ctx context.Context, cfg loadConfig) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	st, err := fetchStats(ctx, cfg.Control)
	if err != nil {
		return Result{}, err
	}
	srv, ok := st.Servers[cfg.Server]
	if !ok {
		return Result{}, fmt.Errorf("-server: the upstream has no %q server", cfg.Server)
	}
	if cfg.Addr == "" {
		cfg.Addr = srv.Addr
	}
	d, err := newDialer(cfg.Addr, cfg.ClientTLS, cfg.SessionTimeout)
	if err != nil {
		return Result{}, err
	}
	d.proxyHeader = cfg.ProxyHeader
	r := Result{Target: cfg.Target, Rep: cfg.Rep, Test: cfg.test(), Server: cfg.Server, Conns: cfg.Conns, Metrics: map[string]float64{}}
	errs := &errorLog{}
	// Every mode ends by itself; this bounds it even if a proxy hangs.
	limit := cfg.Warmup + cfg.Duration + cfg.Settle + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	switch cfg.Mode {
	case "throughput":
		runThroughput(ctx, &cfg, d, &r, errs)
	case "rr":
		runRR(ctx, &cfg, d, &r, errs)
	case "churn":
		runChurn(ctx, &cfg, d, &r, errs)
	case "idle":
		runIdle(ctx, &cfg, d, &r, errs)
	}
	r.Errors = errs.n.Load()
	errs.mu.Lock()
	r.ErrorSamples = slices.Clone(errs.samples)
	errs.mu.Unlock()
	for k, v := range r.Metrics {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(r.Metrics, k)
		}
	}
	return r, nil
}

// human renders a result as one line of text.
func (r Result) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s rep %d  %-12s", r.Target, r.Rep, r.Test)
	keys := make([]string, 0, len(r.Metrics))
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s=%.4g", k, r.Metrics[k])
	}
	fmt.Fprintf(&b, "  errors=%d", r.Errors)
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(&b, "\n    error: %s", s)
	}
	return b.String()
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadConfig
	fs.StringVar(&cfg.Mode, "mode", "", "throughput, rr, churn or idle")
	fs.StringVar(&cfg.Addr, "addr", "", "where to connect: the proxy (default: the upstream server itself, i.e. direct)")
	fs.StringVar(&cfg.Control, "control", "", "the upstream's control address (CONTROL= from bench upstream)")
	fs.StringVar(&cfg.Server, "server", "", "the upstream server behind -addr: sink, source, echo or tlsecho (default: sink for c2u, source for u2c, echo otherwise)")
	fs.StringVar(&cfg.Dir, "dir", "c2u", "throughput direction: c2u (client to sink) or u2c (source to client)")
	fs.IntVar(&cfg.Conns, "conns", 0, "streams (throughput, default 1), kept conns (rr, default 1), workers (churn, default 16) or sessions (idle, default 3000)")
	fs.IntVar(&cfg.Size, "size", 64, "request size in bytes (rr, churn, idle)")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up before measuring")
	fs.DurationVar(&cfg.Duration, "duration", 4*time.Second, "measured window")
	fs.DurationVar(&cfg.Settle, "settle", time.Second, "idle: wait this long with all sessions open before reading the proxy")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 5*time.Second, "bound on one dial, TLS handshake or exchange")
	fs.IntVar(&cfg.PID, "pid", 0, "the proxy's PID, root of the process tree measured (0: none)")
	fs.StringVar(&cfg.ClientTLS, "client-tls", "", "CA file: clients speak TLS themselves (direct churn against tlsecho)")
	fs.StringVar(&cfg.ProxyHeader, "proxy-header", "", "v1 or v2: each client conn starts with a PROXY protocol header for its own addresses, written alone once connected, as a load balancer would (for a proxy with -accept-proxy 127.0.0.1/32; sink, echo and tlsecho drop it when reached directly)")
	fs.StringVar(&cfg.Target, "target", "direct", "target label for the result")
	fs.IntVar(&cfg.Rep, "rep", 1, "repetition label for the result")
	jsonPath := fs.String("json", "", "append the result as a JSON line to this file (default: stdout only)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	raiseNoFile(stderr)
	r, err := Load(ctx, cfg)
	if err != nil {
		return err
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, r.human())
	if *jsonPath != "" {
		f, err := os.OpenFile(*jsonPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("opening -json file: %w", err)
		}
		_, werr := f.Write(append(line, '\n'))
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("writing -json file: %w", err)
		}
	} else {
		fmt.Fprintln(stdout, string(line))
	}
	if r.Errors > 0 {
		return fmt.Errorf("%s %s: %d errors", r.Target, r.Test, r.Errors)
	}
	return nil
}
