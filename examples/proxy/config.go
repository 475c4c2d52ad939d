package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/listener"
	"github.com/relaykit/relay/pool"
)

// usageError reports a bad flag, environment variable or config file
// value. main exits with status 2 for it.
type usageError struct {
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func (e *usageError) Unwrap() error { return e.err }

// badFlag returns the usage error for a value that parsed but does not
// make sense, worded like the flag package's own parse errors.
func badFlag(name, value string, reason error) error {
	return &usageError{fmt.Errorf("invalid value %q for flag -%s: %w", value, name, reason)}
}

// config is the proxy's validated configuration.
type config struct {
	listen          string           // host:port to accept on
	clientKeepalive time.Duration    // TCP keepalive idle time and probe interval for clients; 0 is off
	upstreams       []balance.Server // -upstream; empty runs the demo upstream
	balance         balance.Policy   // -balance

	healthEvery, healthTimeout time.Duration // active checks; every 0 is off
	healthRise, healthFall     int
	healthSend, healthExpect   []byte
	resolveEvery               time.Duration // 0: only at start and reload
	maxSessionsPerServer       int           // 0: no cap

	reuse                   pool.Policy
	protocol                protocol // what the upstream speaks: its reset
	spares, maxIdle         int
	maxOpen, maxSessions    int
	idleTimeout, lifetime   time.Duration
	dialTimeout, getTimeout time.Duration
	sessionIdle, drain      time.Duration
	shutdownGrace           time.Duration
	fenceSend, fenceExpect  []byte

	upstreamTLS *tls.Config // nil: plain TCP to the upstream
	listenTLS   *tls.Config // nil: no TLS termination

	// The front door (frontdoor.go, proxyproto.go).
	routes           []route              // -route; with them, empty upstreams means no default route
	peekTimeout      time.Duration        // 0: the library's default
	sendProxy        listener.ProxyHeader // -send-proxy
	acceptProxy      []netip.Prefix       // -accept-proxy
	refuseOthers     bool                 // -accept-proxy-others refuse
	allow, deny      []netip.Prefix       // -allow, -deny
	maxSessionsPerIP int                  // 0: no cap

	metrics  string // host:port for /metrics and /debug/pprof; "" is off
	logLevel slog.Level

	// values holds every flag's value as parsed (flag.Value.String),
	// by name: what a reload compares to tell what changed.
	values map[string]string
}

// parseConfig reads args, then RELAY_* environment variables, then the
// -config file (each fills in only what the one before left unset), and
// validates the result. Every error it returns is a *usageError naming
// the flag, except flag.ErrHelp, after which the usage text is on stdout.
func parseConfig(args []string, stdout io.Writer) (*config, error) {
	flags := flag.NewFlagSet("proxy", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // errors are returned, usage printed below
	flags.Usage = func() {}

	cfg := &config{
		listen:          "127.0.0.1:7070",
		clientKeepalive: 15 * time.Second, // Go's default idle and interval
		spares:          listener.DefaultSpares,
		maxIdle:         pool.DefaultMaxIdle,
		dialTimeout:     pool.DefaultDialTimeout,
		getTimeout:      listener.DefaultGetTimeout,
		shutdownGrace:   10 * time.Second,
		logLevel:        slog.LevelInfo,
		protocol:        protocolNone,
		healthRise:      balance.DefaultRise,
		healthFall:      balance.DefaultFall,
		resolveEvery:    balance.DefaultResolveEvery,
	}
	flags.Var(addrValue{s: &cfg.listen}, "listen", "accept clients on `host:port` (port 0 picks one; the bound address is logged)")
	flags.Var(durationValue{d: &cfg.clientKeepalive, max: maxClientKeepalive}, "client-keepalive", fmt.Sprintf("TCP keepalive for clients: first probe after `d` idle, then every d, "+
		"drop after %d unanswered (0: off; rounded up to whole seconds; at most %s). On Linux set once on the listening socket, "+
		"which accepted conns inherit, instead of 4 system calls per client", clientKeepaliveCount, fmtSeconds(maxClientKeepalive)))
	flags.Var(upstreamsValue{&cfg.upstreams}, "upstream", "forward to `host:port[@weight],...`: one server or several, comma-separated, host names allowed "+
		"(each address a name resolves to is a server), weight 1 to 256 (default 1); "+
		"empty starts an embedded demo echo upstream on loopback, unless -route is set: then empty means no default route "+
		"(a client no route takes is refused). Reloaded on SIGHUP")
	flags.Var(routesValue{&cfg.routes}, "route", "route TLS clients by server name (SNI), without terminating TLS: `NAME[,NAME...]=UPSTREAMS`, "+
		"NAME a host name or *.suffix (one label), UPSTREAMS as -upstream; repeatable, and ';' separates routes in one value "+
		"(RELAY_ROUTE=\"a.test=h1:443;b.test=h2:443\"; in the -config file one \"route ...\" line each). Each route has its own servers "+
		"with -upstream's pool, -balance, health and resolve flags; a client no route takes (no TLS, no name, another name) goes to -upstream. "+
		"Servers reloaded on SIGHUP; adding or removing a route needs a restart")
	flags.Var(durationValue{d: &cfg.peekTimeout}, "peek-timeout", "with -route: bound on the wait for a client's TLS ClientHello (`d`; 0: library default, 5s); "+
		"a client that sent nothing by then goes to -upstream, one that sent part of a hello is closed")
	flags.Var(prefixesValue{&cfg.allow}, "allow", "admit only clients from these `CIDRs` (comma-separated; a bare address is itself; empty: everyone)")
	flags.Var(prefixesValue{&cfg.deny}, "deny", "refuse clients from these `CIDRs` (comma-separated); wins over -allow")
	flags.Var(countValue{&cfg.maxSessionsPerIP}, "max-sessions-per-ip", "cap on one client address's live sessions; past it a client is closed at once (`n`; 0: no cap)")
	flags.Var(sendProxyValue{&cfg.sendProxy}, "send-proxy", "write a PROXY protocol header, `version` v1 or v2, to each upstream conn before the client's bytes, "+
		"so the server sees the client's address (empty: off). Needs -reuse never")
	flags.Var(prefixesValue{&cfg.acceptProxy}, "accept-proxy", "clients from these `CIDRs` (load balancers) must start with a PROXY protocol header, v1 or v2, "+
		"whose source address then stands for the client everywhere: -allow/-deny, -max-sessions-per-ip, logs, the status page, -send-proxy. "+
		"A trusted client with no valid header within 10s is closed. Not on Windows")
	flags.Var(othersValue{&cfg.refuseOthers}, "accept-proxy-others", "with -accept-proxy, `mode` for clients from other addresses: plain (the default: served as they are; "+
		"a header they send is data, never honoured) or refuse (closed at once)")
	flags.Var(balanceValue{&cfg.balance}, "balance", "how a session picks its upstream server: round-robin, least-conn, random (two random choices, the lighter) "+
		"or client-ip (the same client IP to the same server); weighted. Reloaded on SIGHUP")
	flags.Var(countValue{&cfg.maxSessionsPerServer}, "max-sessions-per-server", "cap on one upstream server's sessions in flight; past it another server is taken, "+
		"and when all are full clients wait, within -get-timeout (`n`; 0: no cap)")
	flags.Var(durationValue{d: &cfg.healthEvery}, "health-every", "active health checks: dial every upstream server every `d` "+
		"(and send -health-send); -health-fall failures in a row take it out, -health-rise successes bring it back (0: off; "+
		"failed dials and sessions still eject a server for a while)")
	flags.Var(durationValue{d: &cfg.healthTimeout}, "health-timeout", "bound on one health check, dial included (`d`; 0: -health-every, at most 2s)")
	flags.Var(positiveValue{&cfg.healthRise}, "health-rise", "health checks passed in a row that bring a server back (`n`)")
	flags.Var(positiveValue{&cfg.healthFall}, "health-fall", "health checks failed in a row that take a server out (`n`)")
	flags.Var(&bytesValue{b: &cfg.healthSend}, "health-send", "`bytes` a health check writes after its dial (escapes as -fence-send; "+
		"default with -protocol redis: PING\\r\\n, memcached: mn\\r\\n; else none: the dial alone is the check)")
	flags.Var(&bytesValue{b: &cfg.healthExpect}, "health-expect", "`bytes` the reply to -health-send must start with (same escapes; "+
		"default with -protocol redis: +PONG\\r\\n, memcached: MN\\r\\n)")
	flags.Var(durationValue{d: &cfg.resolveEvery}, "resolve-every", "resolve -upstream and -route host names again every `d`: a server whose address left drains, "+
		"a new address joins (0: only at start, and on a reload that changes a set's servers or -balance)")
	flags.Var(policyValue{&cfg.reuse}, "reuse", "reuse `policy` for used upstream conns: never, clean or verified (see Reuse below)")
	flags.Var(protocolValue{&cfg.protocol}, "protocol", "what the upstream speaks: none, redis or memcached. redis or memcached selects -reuse verified "+
		"with that protocol's reset, which drains owed replies and clears session state (see Reuse below)")
	flags.Var(countValue{&cfg.spares}, "spares", "fresh upstream conns to keep dialed ahead, per upstream server (`n`)")
	flags.Var(countValue{&cfg.maxIdle}, "max-idle", "used upstream conns kept for reuse, per upstream server (`n`; 0 keeps none)")
	flags.Var(countValue{&cfg.maxOpen}, "max-open", "cap on one upstream server's conns, idle and in use (`n`; 0: no cap)")
	flags.Var(countValue{&cfg.maxSessions}, "max-sessions", "cap on concurrent sessions; beyond it clients wait in the kernel backlog (`n`; 0: no cap)")
	flags.Var(durationValue{d: &cfg.idleTimeout}, "idle-timeout", "close an idle pooled upstream conn after `d` (0: never)")
	flags.Var(durationValue{d: &cfg.lifetime}, "max-lifetime", "close an upstream conn `d` after it was dialed (0: never)")
	flags.Var(durationValue{d: &cfg.dialTimeout}, "dial-timeout", "bound on one upstream dial, TLS handshake included (`d`; 0: library default). "+
		"It is per try: a dial that fails or times out is retried on another server, within -get-timeout")
	flags.Var(durationValue{d: &cfg.getTimeout}, "get-timeout", "bound on a client's wait for an upstream conn, failover to other servers included, before it is closed (`d`; 0: library default)")
	flags.Var(durationValue{d: &cfg.sessionIdle}, "session-idle-timeout", "end a session when no byte moved either way for `d` (0: never)")
	flags.Var(durationValue{d: &cfg.drain}, "drain-timeout", "with reuse: after the client's FIN, relay a reply still owed until the upstream is quiet for `d` (0: 50ms, or 5ms with -protocol or a fence, "+
		"whose reset drains late replies itself; then a FIN with no reply owed ends the session at once)")
	flags.Var(durationValue{d: &cfg.shutdownGrace}, "shutdown-grace", "on SIGINT/SIGTERM, let sessions finish for `d`, then cut them (0 cuts at once)")
	flags.Var(&bytesValue{b: &cfg.fenceSend}, "fence-send", "verified reuse for a protocol -protocol does not know: `bytes` written to a used upstream conn "+
		"before it is kept (escapes \\r \\n \\t \\\\ \\xNN). They must also reset the protocol's session state: a fence that only "+
		"answers (Redis PING) lets the next client inherit the last one's login, database or subscriptions")
	flags.Var(&bytesValue{b: &cfg.fenceExpect}, "fence-expect", "verified reuse: `bytes` the reply to -fence-send must end with (same escapes)")
	upTLS := flags.Bool("upstream-tls", false, "dial the -upstream servers with TLS (handshake done before a conn is pooled); -route servers get the client's own TLS, passed through")
	upCA := flags.String("upstream-tls-ca", "", "PEM `file` of CAs to verify the upstream with (default: system roots)")
	upName := flags.String("upstream-tls-server-name", "", "`name` to verify the upstreams' certificates for (default: each server's host, as -upstream names it)")
	upInsecure := flags.Bool("upstream-tls-insecure", false, "do not verify the upstream's certificate (testing only)")
	var upCurves []tls.CurveID
	flags.Var(curvesValue{&upCurves}, "upstream-tls-curves", "TLS key-exchange `groups` to offer the upstream, comma-separated, each "+
		curvesHelp+"; Go ranks them in its own order (hybrid post-quantum first), not the list's (empty: Go's defaults, "+
		"X25519MLKEM768 first). X25519 alone matches peers built on OpenSSL 3.0, which lacks ML-KEM, and costs less CPU "+
		"per handshake, at the price of no post-quantum protection")
	cert := flags.String("tls-cert", "", "PEM certificate `file`: terminate TLS on the listener (with -tls-key)")
	key := flags.String("tls-key", "", "PEM private key `file` for -tls-cert")
	flags.Var(addrValue{s: &cfg.metrics, empty: true}, "metrics", "serve /metrics (Prometheus), a status page at / and /debug/pprof/ on `host:port` (empty is off)")
	flags.Var(levelValue{&cfg.logLevel}, "log-level", "log `level`: debug, info, warn or error")
	flags.String("config", "", "read flags from `file`, one \"name value\" per line (# comments)")

	err := ff.Parse(flags, args,
		ff.WithEnvVarPrefix("RELAY"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ff.PlainParser),
	)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, flags)
		return nil, flag.ErrHelp
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, &usageError{fmt.Errorf("flag -config: %w", err)}
		}
		return nil, &usageError{err}
	}
	if flags.NArg() > 0 {
		return nil, &usageError{fmt.Errorf("unexpected argument %q (flags only; see -h)", flags.Arg(0))}
	}
	set := map[string]bool{} // flags set by args, env or file
	flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.values = make(map[string]string)
	flags.VisitAll(func(f *flag.Flag) { cfg.values[f.Name] = f.Value.String() })

	if err := cfg.checkReuse(set); err != nil {
		return nil, err
	}
	if cfg.maxOpen > 0 && cfg.spares > cfg.maxOpen {
		return nil, badFlag("spares", fmt.Sprint(cfg.spares), fmt.Errorf("more than -max-open %d", cfg.maxOpen))
	}
	if err := cfg.checkHealth(set); err != nil {
		return nil, err
	}

	if *upTLS {
		// Only -upstream's servers: a routed client's own TLS passes
		// through to its route's servers (see routeBalanceConfig).
		c, err := upstreamTLSConfig(len(cfg.upstreams) > 0, *upCA, *upName, *upInsecure, upCurves)
		if err != nil {
			return nil, err
		}
		cfg.upstreamTLS = c
	} else {
		for _, name := range []string{"upstream-tls-ca", "upstream-tls-server-name", "upstream-tls-insecure", "upstream-tls-curves"} {
			if set[name] {
				return nil, &usageError{fmt.Errorf("flag -%s needs -upstream-tls", name)}
			}
		}
	}

	switch {
	case *cert != "" && *key != "":
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return nil, &usageError{fmt.Errorf("flags -tls-cert %q and -tls-key %q: %w", *cert, *key, err)}
		}
		cfg.listenTLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	case *cert != "":
		return nil, &usageError{errors.New("flag -tls-cert needs -tls-key")}
	case *key != "":
		return nil, &usageError{errors.New("flag -tls-key needs -tls-cert")}
	}
	if err := cfg.checkFrontDoor(set); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkReuse applies the reuse rules. -protocol redis or memcached, or
// a fence (-fence-send and -fence-expect, always both), says how to reset
// a used conn; the two exclude each other. Either selects the verified
// policy when -reuse was not set anywhere. -reuse never keeps reuse off
// with -protocol (which names the upstream's protocol whether or not
// conns are reused); with a fence, which means nothing without reuse, it
// is an error, and so is -reuse clean with either, rather than a silent
// override. -reuse verified needs one of them.
func (c *config) checkReuse(set map[string]bool) error {
	send, expect := len(c.fenceSend) > 0, len(c.fenceExpect) > 0
	proto := c.protocol != protocolNone
	switch {
	case send && !expect:
		return &usageError{errors.New("flag -fence-send needs -fence-expect")}
	case expect && !send:
		return &usageError{errors.New("flag -fence-expect needs -fence-send")}
	case send && proto:
		return &usageError{fmt.Errorf("flags -fence-send/-fence-expect and -protocol %s exclude each other (the protocol brings its own reset)", c.protocol)}
	case (send || proto) && c.reuse == pool.ReuseIfClean:
		if proto {
			return &usageError{fmt.Errorf("flag -reuse clean with -protocol %s: clean reuse does not reset session state; use -reuse verified (the default with -protocol) or never", c.protocol)}
		}
		return &usageError{errors.New("flags -fence-send/-fence-expect need -reuse verified, got -reuse clean")}
	case (send || proto) && c.reuse == pool.ReuseNever:
		switch {
		case !set["reuse"]:
			c.reuse = pool.ReuseIfVerified
		case send:
			return &usageError{errors.New("flags -fence-send/-fence-expect need -reuse verified, got -reuse never")}
		}
		// -protocol with -reuse never: reuse stays off, spares still work.
	case !send && !proto && c.reuse == pool.ReuseIfVerified:
		return &usageError{errors.New("flag -reuse verified needs -protocol or -fence-send and -fence-expect")}
	}
	return nil
}

// checkHealth applies the active check's rules: its other flags need
// -health-every, -health-expect needs -health-send, and -protocol redis
// or memcached brings its own check (PING, mn) when -health-send is not
// set.
func (c *config) checkHealth(set map[string]bool) error {
	if c.healthEvery == 0 {
		for _, name := range []string{"health-send", "health-expect", "health-rise", "health-fall", "health-timeout"} {
			if set[name] {
				return &usageError{fmt.Errorf("flag -%s needs -health-every", name)}
			}
		}
		return nil
	}
	switch {
	case len(c.healthExpect) > 0 && len(c.healthSend) == 0:
		return &usageError{errors.New("flag -health-expect needs -health-send")}
	case len(c.healthExpect) > balance.MaxCheckExpect:
		return badFlag("health-expect", escapeBytes(c.healthExpect), fmt.Errorf("%d bytes, more than %d", len(c.healthExpect), balance.MaxCheckExpect))
	case len(c.healthSend) > 0:
		return nil
	}
	switch c.protocol {
	case protocolRedis:
		c.healthSend, c.healthExpect = []byte("PING\r\n"), []byte("+PONG\r\n")
	case protocolMemcached:
		c.healthSend, c.healthExpect = []byte("mn\r\n"), []byte("MN\r\n")
	}
	return nil
}

// reset returns the pool's Reset: the protocol's, else the fence.
func (c *config) reset() pool.Reset {
	if c.protocol != protocolNone {
		return c.protocol.reset()
	}
	return pool.Fence(c.fenceSend, c.fenceExpect)
}

// upstreamTLSConfig builds the client TLS config for dialing upstream.
// Sessions are cached so that redials resume rather than redo the
// handshake. curves, when not nil, are the key-exchange groups offered
// (nil: Go's defaults); crypto/tls ignores their order.
func upstreamTLSConfig(upstream bool, caFile, serverName string, insecure bool, curves []tls.CurveID) (*tls.Config, error) {
	if !upstream {
		return nil, &usageError{errors.New("flag -upstream-tls needs -upstream (the demo upstream is plain TCP)")}
	}
	if insecure && caFile != "" {
		return nil, &usageError{errors.New("flags -upstream-tls-insecure and -upstream-tls-ca exclude each other")}
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: insecure, //nolint:gosec // opt-in flag, documented as testing only
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
		CurvePreferences:   curves,
	}
	// An empty ServerName is each server's host (see tlsDialer).
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, badFlag("upstream-tls-ca", caFile, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, badFlag("upstream-tls-ca", caFile, errors.New("no PEM certificate found"))
		}
		c.RootCAs = roots
	}
	return c, nil
}

// balanceConfig is the upstream set's share of the configuration: the
// servers, the policy, health checking, and the template of each
// server's pool.
func (c *config) balanceConfig(servers []balance.Server, log *slog.Logger) balance.Config {
	bc := balance.Config{
		Servers:     servers,
		Policy:      c.balance,
		Pool:        c.poolConfig(log),
		MaxSessions: c.maxSessionsPerServer,
		Check: balance.Check{
			Every:   c.healthEvery,
			Timeout: c.healthTimeout,
			Rise:    c.healthRise,
			Fall:    c.healthFall,
			Send:    c.healthSend,
			Expect:  c.healthExpect,
		},
		ResolveEvery: c.resolveEvery,
		Logger:       log,
	}
	if bc.ResolveEvery == 0 {
		bc.ResolveEvery = -1 // the set's "only in New and Update"
	}
	if c.upstreamTLS != nil {
		bc.Dial = tlsDialer(c.upstreamTLS)
	}
	return bc
}

// routeBalanceConfig is balanceConfig for a -route's servers. They are
// dialed in plain TCP whatever -upstream-tls says: the routed client's
// own TLS passes through to them, and the proxy's TLS around it would
// hand them a ClientHello inside a TLS stream.
func (c *config) routeBalanceConfig(servers []balance.Server, log *slog.Logger) balance.Config {
	bc := c.balanceConfig(servers, log)
	bc.Dial = nil
	return bc
}

// poolConfig is the template of each server's pool.
func (c *config) poolConfig(log *slog.Logger) pool.Config {
	pc := pool.Config{
		Spares:      c.spares,
		MaxIdle:     c.maxIdle,
		MaxOpen:     c.maxOpen,
		IdleTimeout: c.idleTimeout,
		MaxLifetime: c.lifetime,
		DialTimeout: c.dialTimeout,
		Reuse:       c.reuse,
		Logger:      log,
	}
	if c.reuse == pool.ReuseIfVerified {
		pc.Reset = c.reset()
	}
	return pc
}

// listenerConfig is the ProxyListener's share of the configuration.
func (c *config) listenerConfig(log *slog.Logger) listener.Config {
	return listener.Config{
		MaxSessions:        c.maxSessions,
		SessionIdleTimeout: c.sessionIdle,
		DrainTimeout:       c.drain,
		GetTimeout:         c.getTimeout,
		PeekTimeout:        c.peekTimeout,
		Access:             listener.Access{Allow: c.allow, Deny: c.deny},
		MaxSessionsPerIP:   c.maxSessionsPerIP,
		SendProxy:          c.sendProxy,
		Logger:             log,
	}
}

func printUsage(w io.Writer, flags *flag.FlagSet) {
	fmt.Fprint(w, usageHead)
	flags.SetOutput(w)
	flags.PrintDefaults()
	flags.SetOutput(io.Discard)
	fmt.Fprint(w, usageTail)
}

const usageHead = `proxy: a TCP forwarder with pooled upstream connections.

Usage:
  proxy [flags]

Every flag can also be set with an environment variable RELAY_<NAME>
(upper case, '-' as '_', e.g. RELAY_MAX_OPEN=16) or a line "<name> <value>"
in the -config file. Command-line flags win over the environment, which
wins over the file.

Flags:
`

const usageTail = `
Several upstreams:
  -upstream a:6379,b:6379@2,c:6379 forwards to three servers, b with twice
  the share of the others; -balance picks one per session. Each server has
  its own pool (-spares, -max-idle, -max-open are per server). A dial that
  fails or times out (-dial-timeout, per try) is retried on another server
  within -get-timeout, so one server down costs a client nothing while
  another is up. Five failures in a row (failed dials, sessions the server
  reset before its first byte, failed checks) eject a server for 10s,
  doubling while it keeps failing, though never the last healthy one;
  -health-every adds active checks, which can mark any server down, the
  last one too. A host name is every address it resolves to, resolved
  again every -resolve-every.

Front door:
  -route api.example.com=10.0.0.5:443 -route '*.example.com=10.0.0.6:443'
  sends TLS clients by the server name of their hello (SNI) to servers of
  their own, without terminating TLS (so not with -tls-cert); others go to
  -upstream, and with -route an empty -upstream refuses them. -allow and
  -deny (deny wins) and -max-sessions-per-ip refuse clients before any
  upstream is taken (relay_refused_total). -send-proxy v1|v2 tells the
  upstream the client's address (needs -reuse never). -accept-proxy takes
  the client's address from the PROXY header of a load balancer in front
  (HAProxy send-proxy-v2): only from the listed addresses; others are
  plain clients, or refused with -accept-proxy-others refuse. The header
  is read exactly, so the copy still splices.

Reload (SIGHUP, not on Windows):
  re-reads the -config file and the environment (the command line stays
  as given and still wins) and validates all of it as at start. Invalid:
  logged at ERROR, nothing changes. Valid: -upstream (servers, weights),
  the servers of each -route already running (by its names) and -balance
  take effect at once; a removed server drains, its live
  sessions finish; no session is dropped. Other flags need a restart: a
  change to them is logged at WARN and ignored.

Reuse:
  never     every upstream conn serves one client, then is closed; spares
            still hide the dial. Safe for any protocol.
  clean     a used conn is kept when its session ended cleanly (last bytes
            went to the client, no error, nothing unread). Only for strict
            request/response protocols without pipelining or server pushes.
  verified  clean, and the upstream's reset succeeds before the conn is
            kept: -protocol redis (RESET, proven by two ECHO tokens) or
            -protocol memcached (mn), or for another protocol a fence,
            -fence-send/-fence-expect, whose bytes must also reset the
            protocol's session state. A fence that only answers, such as
            Redis PING, drains owed replies but hands the next client the
            last one's login, database and subscriptions. -protocol or a
            fence selects verified when -reuse is not set. -reuse never
            keeps reuse off with -protocol; with a fence, and -reuse clean
            with either, is an error.

Try it:
  proxy                       # embedded demo upstream; then:
  echo hello | nc 127.0.0.1 7070
  proxy -reuse clean          # run the nc line twice: same "upstream conn #N"

Exit status: 0 after SIGINT/SIGTERM and a drain, 2 for a bad flag, 1 otherwise.
`
