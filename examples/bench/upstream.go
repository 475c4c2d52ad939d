package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fence the echo servers understand: a read that returns exactly
// fencePing is answered with fencePong instead of being echoed. Load
// payloads never contain it.
const (
	fencePing = "PING\r\n"
	fencePong = "+PONG\r\n"
)

// The Redis reset the echo servers understand, in the same spirit: a read
// that is exactly pool.RedisReset's write,
//
//	ECHO <a>\r\nRESET\r\nECHO <b>\r\n
//
// with a and b non-empty and free of spaces and line ends, is answered as
// Redis would: $len(a) a, +RESET, $len(b) b. Load payloads never start
// with "ECHO ".
const (
	redisEcho      = "ECHO "
	redisResetSep  = "\r\nRESET\r\nECHO "
	redisResetMin  = len(redisEcho) + 1 + len(redisResetSep) + 1 + len("\r\n")
	redisResetResp = "+RESET\r\n"
)

// Server kinds, as named on the command line and in ServerStats.
const (
	kindSink    = "sink"
	kindSource  = "source"
	kindEcho    = "echo"
	kindTLSEcho = "tlsecho"
)

// ServerStats is a snapshot of one upstream server's counters. All counts
// are totals since the server started; the load program works on deltas.
type ServerStats struct {
	Kind string `json:"kind"`
	Addr string `json:"addr"`
	// Accepts counts accepted connections; Open is how many are open now.
	Accepts int64 `json:"accepts"`
	Open    int64 `json:"open"`
	// BytesIn were read from clients; BytesOut were written to them
	// (accepted by the kernel).
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// Fences counts PING lines answered with +PONG (echo servers only).
	Fences int64 `json:"fences"`
	// RedisResets counts Redis resets (ECHO, RESET, ECHO in one read)
	// answered as Redis would (echo servers only). Not to be confused
	// with Resets below.
	RedisResets int64 `json:"redis_resets"`
	// Resets counts connections that ended with a reset or broken pipe
	// (normal for source when a client goes away); Errors counts every
	// other failure except EOF, including failed TLS handshakes.
	Resets int64 `json:"resets"`
	Errors int64 `json:"errors"`
	// Handshakes and Resumed count completed TLS handshakes and how many
	// of them resumed a session (tlsecho only).
	Handshakes int64 `json:"handshakes"`
	Resumed    int64 `json:"resumed"`
	// MLKEM counts handshakes whose key exchange was a post-quantum hybrid
	// (X25519MLKEM768 and the like): Go clients offer one by default, and
	// it costs both ends more CPU than X25519 alone.
	MLKEM int64 `json:"mlkem"`
	// ProxyHeaders counts PROXY protocol headers (v1 or v2) read and
	// dropped at the start of a conn (sink, echo and tlsecho: a proxy with
	// -send-proxy writes one before the client's bytes).
	ProxyHeaders int64 `json:"proxy_headers"`
}

// UpstreamStats is what the control port serves at /stats.
type UpstreamStats struct {
	CAFile  string                 `json:"ca_file"`
	Servers map[string]ServerStats `json:"servers"`
}

// counters are one server's live counters.
type counters struct {
	accepts, open, bytesIn, bytesOut, fences, redisResets, resets, errors, handshakes, resumed, mlkem, proxyHeaders atomic.Int64
}

// server is one upstream listener with its handler. Close closes the
// listener and every tracked connection, then waits for their goroutines.
type server struct {
	kind   string
	ln     net.Listener
	handle func(c net.Conn, ctr *counters) error
	ctr    counters

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open conns; nil after Close
	wg    sync.WaitGroup        // serve loop and one per conn
}

func newServer(kind string, handle func(net.Conn, *counters) error) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for %s: %w", kind, err)
	}
	s := &server{kind: kind, ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *server) serve() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off and go on, as net/http does.
			s.ctr.errors.Add(1)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			return
		}
		s.ctr.accepts.Add(1)
		s.ctr.open.Add(1)
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) serveConn(c net.Conn) {
	defer s.wg.Done()
	err := s.handle(c, &s.ctr)
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		s.ctr.resets.Add(1)
	default:
		s.ctr.errors.Add(1)
	}
	c.Close()
	s.ctr.open.Add(-1)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops the server and waits for its goroutines. Safe to call twice.
func (s *server) Close() error {
	s.mu.Lock()
	if s.conns == nil {
		s.mu.Unlock()
		return nil
	}
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *server) stats() ServerStats {
	return ServerStats{
		Kind:         s.kind,
		Addr:         s.ln.Addr().String(),
		Accepts:      s.ctr.accepts.Load(),
		Open:         s.ctr.open.Load(),
		BytesIn:      s.ctr.bytesIn.Load(),
		BytesOut:     s.ctr.bytesOut.Load(),
		Fences:       s.ctr.fences.Load(),
		RedisResets:  s.ctr.redisResets.Load(),
		Resets:       s.ctr.resets.Load(),
		Errors:       s.ctr.errors.Load(),
		Handshakes:   s.ctr.handshakes.Load(),
		Resumed:      s.ctr.resumed.Load(),
		MLKEM:        s.ctr.mlkem.Load(),
		ProxyHeaders: s.ctr.proxyHeaders.Load(),
	}
}

// ioBufSize is the buffer of the bulk handlers (sink, source) and of the
// throughput clients.
const ioBufSize = 256 << 10

// handleSink reads and discards until EOF, counting bytes (those of a
// PROXY header at the start excepted: see readSkippingProxyHeader).
func handleSink(c net.Conn, ctr *counters) error {
	buf := make([]byte, ioBufSize)
	for first := true; ; first = false {
		var n int
		var err error
		if first {
			n, err = readSkippingProxyHeader(c, buf, ctr)
		} else {
			n, err = c.Read(buf)
		}
		ctr.bytesIn.Add(int64(n))
		if err != nil {
			return err
		}
	}
}

// handleSource writes the deterministic stream (see pattern.go) from its
// start until the write fails.
func handleSource(c net.Conn, ctr *counters) error {
	var off int64
	for {
		n, err := c.Write(patternChunk(off, ioBufSize))
		off += int64(n)
		ctr.bytesOut.Add(int64(n))
		if err != nil {
			return err
		}
	}
}

// handleEcho writes back what it reads, except that a read of exactly
// "PING\r\n" is answered with "+PONG\r\n" (a Redis-like fence), and a
// read of exactly a Redis reset (see redisEcho) as Redis would answer it.
// A PROXY header at the start of the conn is dropped, not echoed (see
// readSkippingProxyHeader); the data that came with it is the first read.
func handleEcho(c net.Conn, ctr *counters) error {
	buf := make([]byte, 64<<10)
	pong := []byte(fencePong)
	var reply []byte // the Redis reset's reply, reused
	for first := true; ; first = false {
		var n int
		var err error
		if first {
			n, err = readSkippingProxyHeader(c, buf, ctr)
		} else {
			n, err = c.Read(buf)
		}
		if n > 0 {
			ctr.bytesIn.Add(int64(n))
			out := buf[:n]
			if n == len(fencePing) && string(out) == fencePing {
				ctr.fences.Add(1)
				out = pong
			} else if n >= redisResetMin && buf[0] == redisEcho[0] {
				var ok bool
				if reply, ok = appendRedisReset(reply[:0], out); ok {
					ctr.redisResets.Add(1)
					out = reply
				}
			}
			w, werr := c.Write(out)
			ctr.bytesOut.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// appendRedisReset appends to dst the reply to in when in is exactly a
// Redis reset (see redisEcho), and reports whether it was.
func appendRedisReset(dst, in []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(in, []byte(redisEcho))
	if !ok {
		return dst, false
	}
	a, rest, ok := bytes.Cut(rest, []byte(redisResetSep))
	if !ok {
		return dst, false
	}
	b, ok := bytes.CutSuffix(rest, []byte("\r\n"))
	if !ok || !redisArg(a) || !redisArg(b) {
		return dst, false
	}
	dst = appendBulk(dst, a)
	dst = append(dst, redisResetResp...)
	return appendBulk(dst, b), true
}

// redisArg reports whether b is one non-empty inline argument.
func redisArg(b []byte) bool { return len(b) > 0 && !bytes.ContainsAny(b, " \r\n") }

// appendBulk appends b as a RESP bulk string.
func appendBulk(dst, b []byte) []byte {
	dst = strconv.AppendInt(append(dst, '$'), int64(len(b)), 10)
	dst = append(append(append(dst, "\r\n"...), b...), "\r\n"...)
	return dst
}

// tlsEchoHandler completes a TLS handshake (bounded), counts it, then
// echoes as handleEcho does.
func tlsEchoHandler(cfg *tls.Config) func(net.Conn, *counters) error {
	return func(c net.Conn, ctr *counters) error {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		tc.SetDeadline(time.Time{})
		ctr.handshakes.Add(1)
		cs := tc.ConnectionState()
		if cs.DidResume {
			ctr.resumed.Add(1)
		}
		if strings.Contains(cs.CurveID.String(), "MLKEM") {
			ctr.mlkem.Add(1)
		}
		return handleEcho(tc, ctr)
	}
}

// Upstreams is the set of upstream servers plus the control port. Start it
// with StartUpstreams; Close stops everything and waits.
type Upstreams struct {
	servers map[string]*server
	caFile  string
	control *http.Server
	ctlLn   net.Listener
	ctlDone chan struct{} // closed when the control server's Serve returned
}

// StartUpstreams starts sink, source, echo and tlsecho on 127.0.0.1 with
// kernel-chosen ports, writes the TLS CA certificate as ca.pem into dir,
// and serves counters as JSON at http://ControlAddr()/stats.
func StartUpstreams(dir string) (_ *Upstreams, err error) {
	u := &Upstreams{servers: map[string]*server{}, ctlDone: make(chan struct{})}
	defer func() {
		if err != nil {
			for _, s := range u.servers {
				s.Close()
			}
		}
	}()
	cert, caPEM, err := generateCert()
	if err != nil {
		return nil, fmt.Errorf("generating TLS certificate: %w", err)
	}
	u.caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(u.caFile, caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing CA file: %w", err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, k := range []struct {
		kind   string
		handle func(net.Conn, *counters) error
	}{
		{kindSink, handleSink},
		{kindSource, handleSource},
		{kindEcho, handleEcho},
		{kindTLSEcho, tlsEchoHandler(tlsCfg)},
	} {
		s, err := newServer(k.kind, k.handle)
		if err != nil {
			return nil, err
		}
		u.servers[k.kind] = s
	}
	u.ctlLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for control: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(u.Stats())
	})
	u.control = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(u.ctlDone)
		u.control.Serve(u.ctlLn)
	}()
	return u, nil
}

// Stats returns a snapshot of every server's counters.
func (u *Upstreams) Stats() UpstreamStats {
	st := UpstreamStats{CAFile: u.caFile, Servers: map[string]ServerStats{}}
	for k, s := range u.servers {
		st.Servers[k] = s.stats()
	}
	return st
}

// Addr returns the address of the server of the given kind.
func (u *Upstreams) Addr(kind string) string { return u.servers[kind].ln.Addr().String() }

// ControlAddr is where /stats is served.
func (u *Upstreams) ControlAddr() string { return u.ctlLn.Addr().String() }

// CAFile is the PEM file of the CA that signed tlsecho's certificate.
func (u *Upstreams) CAFile() string { return u.caFile }

// Close stops the control port and every server, then waits for them.
func (u *Upstreams) Close() error {
	u.control.Close()
	<-u.ctlDone
	for _, s := range u.servers {
		s.Close()
	}
	return nil
}

// envLines describes the upstreams as shell variable assignments.
func (u *Upstreams) envLines() string {
	var b strings.Builder
	kinds := make([]string, 0, len(u.servers))
	for k := range u.servers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "%s=%s\n", strings.ToUpper(k), u.Addr(k))
	}
	fmt.Fprintf(&b, "CONTROL=%s\nCA_FILE=%s\n", u.ControlAddr(), u.caFile)
	return b.String()
}

func runUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory for ca.pem (default: a new temporary directory)")
	envFile := fs.String("env-file", "", "when set, write SINK=, SOURCE=, ECHO=, TLSECHO=, CONTROL= and CA_FILE= lines here once listening")
	timeout := fs.Duration("timeout", time.Hour, "stop after this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: bench upstream [flags]

Runs four servers on 127.0.0.1 (kernel-chosen ports):
  sink     reads and discards, counting bytes
  source   writes a deterministic stream from offset 0 until the peer goes
  echo     echoes; a read of exactly "PING\r\n" is answered "+PONG\r\n", and
           one of exactly "ECHO <a>\r\nRESET\r\nECHO <b>\r\n" (a Redis reset)
           "$len(a)\r\n<a>\r\n+RESET\r\n$len(b)\r\n<b>\r\n"
  tlsecho  echo (same fence and reset) behind TLS with a generated ECDSA P-256 cert
and a control port serving their counters as JSON at /stats. Sink, echo and
tlsecho (inside TLS) drop a PROXY protocol header, v1 or v2, at the start of
a conn (as a proxy with -send-proxy writes), counting it in proxy_headers.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	raiseNoFile(stderr)
	if *dir == "" {
		d, err := os.MkdirTemp("", "bench-upstream-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	u, err := StartUpstreams(*dir)
	if err != nil {
		return err
	}
	defer u.Close()
	env := u.envLines()
	if *envFile != "" {
		tmp := *envFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(env), 0o644); err != nil {
			return fmt.Errorf("writing env file: %w", err)
		}
		if err := os.Rename(tmp, *envFile); err != nil {
			return fmt.Errorf("writing env file: %w", err)
		}
	}
	fmt.Fprint(stdout, env)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	<-ctx.Done()
	fmt.Fprintln(stderr, "upstream: stopping:", context.Cause(ctx))
	return nil
}

// fetchStats reads the counters from a control port.
func fetchStats(ctx context.Context, control string) (UpstreamStats, error) {
	var st UpstreamStats
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+control+"/stats", nil)
	if err != nil {
		return st, err
	}
	// No keep-alive: a run makes few requests, and no idle connection or
	// its goroutines outlive them.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("fetching upstream stats: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, fmt.Errorf("fetching upstream stats: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("fetching upstream stats: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decoding upstream stats: %w", err)
	}
	return st, nil
}
