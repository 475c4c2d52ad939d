package balance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/relaykit/relay/pool"
)

// Policy is how a Set picks a server for each session.
type Policy uint8

const (
	// RoundRobin takes the servers in turn, in proportion to their
	// weights, spread evenly (smooth weighted round-robin). The default.
	RoundRobin Policy = iota
	// LeastConn takes the server with the fewest sessions in flight for
	// its weight; ties go to the servers in turn.
	LeastConn
	// Random draws two servers at random (in proportion to their
	// weights) and takes the one with fewer sessions in flight for its
	// weight: "the power of two choices".
	Random
	// ClientIP sends each client IP address to the same server while the
	// set stays the same, by weighted rendezvous hashing: adding or
	// removing a server moves only the clients it gains or loses. A
	// client without an IP address (a unix socket) is served in turn.
	ClientIP
)

var policyNames = [...]string{
	RoundRobin: "round-robin",
	LeastConn:  "least-conn",
	Random:     "random",
	ClientIP:   "client-ip",
}

// String returns the policy's name: "round-robin", "least-conn",
// "random" or "client-ip".
func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText returns the policy's name.
func (p Policy) MarshalText() ([]byte, error) {
	if int(p) >= len(policyNames) {
		return nil, fmt.Errorf("balance: unknown policy %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText parses a policy's name, in any case.
func (p *Policy) UnmarshalText(b []byte) error {
	for i, n := range policyNames {
		if strings.EqualFold(string(b), n) {
			*p = Policy(i)
			return nil
		}
	}
	return fmt.Errorf("balance: unknown policy %q (want round-robin, least-conn, random or client-ip)", b)
}

// Server is one entry of a Set's configuration.
type Server struct {
	// Addr is "host:port". A host name that resolves to several
	// addresses is several servers, each with this Weight.
	Addr string
	// Weight is the server's share of sessions relative to the others,
	// from 1 to MaxWeight. Zero means 1.
	Weight int
}

// MaxWeight is the largest Server.Weight.
const MaxWeight = 256

// Passive is outlier detection: what sessions and dials teach about a
// server, with no traffic of its own. A failure is a failed dial (a
// spare's too), a session that the server reset before sending a byte
// (pool.Verdict.UpstreamFailed), or a failed active check. After
// Failures in a row the server is ejected: no session is sent to it, its
// pool keeps nothing idle and dials no spares, for Ejection. Each
// ejection in a row doubles the time, up to MaxEjection; a session that
// the server did not fail starts the count again. When the time is up
// the server is back on probation: its next failure ejects it again.
//
// Active checks do not end an ejection: a passing one proves that a dial
// works, not that sessions do. The last healthy server is never ejected
// (nginx's rule for a lone server): with every server failing, clients
// keep trying it and fail as fast as its dials do, and it serves again
// the moment it is back. Active checks, evidence of their own, can still
// mark it down (Check).
type Passive struct {
	// Failures is how many failures in a row eject a server. Zero means
	// DefaultFailures; negative turns ejection off.
	Failures int
	// Ejection is how long the first ejection lasts. Zero means
	// DefaultEjection.
	Ejection time.Duration
	// MaxEjection caps the doubled ejection time. Zero means
	// DefaultMaxEjection.
	MaxEjection time.Duration
}

// Check is the active health check: every Every, each server is dialed
// (as a pool dials it, TLS included) and, when Send is set, sent Send;
// the reply must start with Expect. Fall failures in a row mark a server
// down (no session is sent to it, its pool keeps nothing idle), Rise
// successes in a row mark it up again. A server starts up.
type Check struct {
	// Every is the interval between two checks of a server. Zero turns
	// active checks off.
	Every time.Duration
	// Timeout bounds one check, dial included. Zero means Every, at
	// most DefaultCheckTimeout.
	Timeout time.Duration
	// Rise and Fall: successes in a row to come back, failures in a row
	// to go. Zero means DefaultRise and DefaultFall.
	Rise, Fall int
	// Send is written after the dial; Expect is what the reply must start
	// with. Both empty: the dial alone is the check. Expect needs Send.
	Send, Expect []byte
}

// Defaults applied for zero Config fields.
const (
	DefaultFailures     = 5
	DefaultEjection     = 10 * time.Second
	DefaultMaxEjection  = 5 * time.Minute
	DefaultCheckTimeout = 2 * time.Second
	DefaultRise         = 2
	DefaultFall         = 3
	DefaultResolveEvery = 30 * time.Second
)

// Config configures a Set. New validates it once and names the first bad
// field in its error.
type Config struct {
	// Servers is the set. At least one is required.
	Servers []Server
	// Policy picks a server per session. The zero value is RoundRobin.
	Policy Policy

	// Pool is the template for every server's pool: Addr, Network, Dial,
	// OnDial and OnRelease are set by the Set. A nil Logger is
	// Config.Logger.
	Pool pool.Config
	// Network is the network servers are dialed on when Dial is nil:
	// "tcp" (the default when empty), "tcp4" or "tcp6".
	Network string
	// Dial, when set, opens a connection to one server: addr is its
	// resolved "ip:port", host the host name it was configured with
	// (for a TLS ServerName). It is used by the pools and the active
	// checks, under their timeouts.
	Dial func(ctx context.Context, addr, host string) (net.Conn, error)

	// MaxSessions caps each server's sessions in flight. Past it another
	// server is taken; when all are full, callers wait in FIFO order until
	// one frees up or their ctx ends. Zero means no cap.
	MaxSessions int

	// Passive is outlier detection (see Passive).
	Passive Passive
	// Check is the active health check (see Check); off when Every is 0.
	Check Check

	// ResolveEvery is how often host names are resolved again. A server
	// whose address is gone drains (no new sessions; live ones finish);
	// a new address joins. Zero means DefaultResolveEvery; negative
	// resolves only in New and Update.
	ResolveEvery time.Duration
	// Resolve, when set, looks up a host name's addresses, in place of
	// net.DefaultResolver.LookupNetIP(ctx, "ip", host).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	// Logger receives ejections, health changes, resolution failures and
	// the servers' pools' records. Nil is silent.
	Logger *slog.Logger
}

// settings is a validated Config with the defaults applied.
type settings struct {
	Config
	failures     int // <= 0: never eject
	checkTimeout time.Duration
	rise, fall   int
	log          *slog.Logger
}

func (cfg *Config) validate() (settings, error) {
	s := settings{Config: *cfg}
	s.Servers = nil // kept apart: see checkServers
	switch cfg.Network {
	case "", "tcp", "tcp4", "tcp6":
	default:
		return s, fmt.Errorf("balance: Config.Network: %q is not a TCP network (want tcp, tcp4 or tcp6)", cfg.Network)
	}
	if int(cfg.Policy) >= len(policyNames) {
		return s, fmt.Errorf("balance: Config.Policy: unknown policy %d", uint8(cfg.Policy))
	}
	if cfg.MaxSessions < 0 {
		return s, fmt.Errorf("balance: Config.MaxSessions: %d is negative (0 means no cap)", cfg.MaxSessions)
	}
	for _, d := range [...]struct {
		name string
		v    time.Duration
	}{
		{"Passive.Ejection", cfg.Passive.Ejection},
		{"Passive.MaxEjection", cfg.Passive.MaxEjection},
		{"Check.Every", cfg.Check.Every},
		{"Check.Timeout", cfg.Check.Timeout},
	} {
		if d.v < 0 {
			return s, fmt.Errorf("balance: Config.%s: %v is negative", d.name, d.v)
		}
	}
	switch {
	case cfg.Check.Rise < 0:
		return s, fmt.Errorf("balance: Config.Check.Rise: %d is negative", cfg.Check.Rise)
	case cfg.Check.Fall < 0:
		return s, fmt.Errorf("balance: Config.Check.Fall: %d is negative", cfg.Check.Fall)
	case len(cfg.Check.Expect) > 0 && len(cfg.Check.Send) == 0:
		return s, errors.New("balance: Config.Check.Expect: needs Check.Send")
	case len(cfg.Check.Expect) > MaxCheckExpect:
		return s, fmt.Errorf("balance: Config.Check.Expect: %d bytes, more than %d", len(cfg.Check.Expect), MaxCheckExpect)
	}
	s.failures = cfg.Passive.Failures
	if s.failures == 0 {
		s.failures = DefaultFailures
	}
	if s.Passive.Ejection == 0 {
		s.Passive.Ejection = DefaultEjection
	}
	if s.Passive.MaxEjection == 0 {
		s.Passive.MaxEjection = DefaultMaxEjection
	}
	s.Passive.MaxEjection = max(s.Passive.MaxEjection, s.Passive.Ejection)
	s.checkTimeout = cfg.Check.Timeout
	if s.checkTimeout == 0 {
		s.checkTimeout = min(cfg.Check.Every, DefaultCheckTimeout)
	}
	s.rise, s.fall = cfg.Check.Rise, cfg.Check.Fall
	if s.rise == 0 {
		s.rise = DefaultRise
	}
	if s.fall == 0 {
		s.fall = DefaultFall
	}
	if s.ResolveEvery == 0 {
		s.ResolveEvery = DefaultResolveEvery
	}
	if s.Network == "" {
		s.Network = "tcp"
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// The template's own fields must pass the pool's checks; an address
	// stands in for the one each server brings.
	tmpl := s.Pool
	tmpl.Addr, tmpl.Dial = "127.0.0.1:1", nil
	tmpl.Network = ""
	if err := tmpl.Validate(); err != nil {
		return s, fmt.Errorf("balance: Config.Pool: %w", err)
	}
	return s, nil
}

// MaxCheckExpect bounds Check.Expect, and so what a check reads.
const MaxCheckExpect = 4096

// checkServers validates a server list, naming the bad entry.
func checkServers(list []Server) error {
	if len(list) == 0 {
		return errors.New("balance: Config.Servers: at least one server is required")
	}
	for i, sv := range list {
		host, port, err := net.SplitHostPort(sv.Addr)
		if err != nil {
			return fmt.Errorf("balance: Config.Servers[%d].Addr: %w", i, err)
		}
		if host == "" {
			return fmt.Errorf("balance: Config.Servers[%d].Addr: %q has no host", i, sv.Addr)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("balance: Config.Servers[%d].Addr: %q: port must be a number from 1 to 65535", i, sv.Addr)
		}
		if sv.Weight < 0 || sv.Weight > MaxWeight {
			return fmt.Errorf("balance: Config.Servers[%d].Weight: %d is out of range (0 to %d; 0 means 1)", i, sv.Weight, MaxWeight)
		}
	}
	return nil
}
