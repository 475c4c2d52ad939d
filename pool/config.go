package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Policy says whether a connection that served one client may serve another.
type Policy uint8

const (
	// ReuseNever (the zero value) closes every used connection after its
	// session. The pool still hides the dial: it keeps fresh, never-used
	// spares dialed ahead. Safe for any protocol.
	ReuseNever Policy = iota
	// ReuseIfClean keeps a used connection when the session's verdict is
	// clean and a peek after QuietPeriod finds nothing pending. Safe only
	// for strict request/response protocols without pipelining,
	// subscriptions, server pushes or per-connection state (logins,
	// selected databases, transactions). Effective on Unix only; elsewhere
	// used connections are closed (see the package doc).
	ReuseIfClean
	// ReuseIfVerified also requires Config.Reset (RedisReset,
	// MemcachedReset, or a Fence for a protocol without session state) to
	// return the connection to a neutral state. Effective on Unix only.
	ReuseIfVerified
)

// String returns "never", "clean" or "verified", which UnmarshalText
// accepts, or "Policy(n)" for an unknown value.
func (p Policy) String() string {
	switch p {
	case ReuseNever:
		return "never"
	case ReuseIfClean:
		return "clean"
	case ReuseIfVerified:
		return "verified"
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText implements encoding.TextMarshaler (so a Policy works with
// flag.TextVar and text-based config files).
func (p Policy) MarshalText() ([]byte, error) {
	if p > ReuseIfVerified {
		return nil, fmt.Errorf("pool: unknown reuse policy %d", uint8(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: it parses "never",
// "clean" or "verified" (what String returns), ignoring case and
// surrounding space, and names the input in its error.
func (p *Policy) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "never":
		*p = ReuseNever
	case "clean":
		*p = ReuseIfClean
	case "verified":
		*p = ReuseIfVerified
	default:
		return fmt.Errorf("pool: unknown reuse policy %q (want never, clean or verified)", b)
	}
	return nil
}

// Config configures a Pool. Its zero value is valid apart from where to
// dial: set Dial or Addr. New validates it once and names the first bad
// field in its error.
type Config struct {
	// Dial opens a new upstream connection; ctx carries DialTimeout and
	// ends when the pool is closed (never a caller's ctx). It should
	// complete any handshake (tls.Dialer does) so spares are truly warm,
	// and honour ctx: Close waits for dials in flight. When nil, the pool
	// dials Network and Addr with a net.Dialer.
	//
	// The pool hands out the returned conn itself, so its ReadFrom,
	// WriteTo and CloseWrite stay visible to the caller. Checks peek the
	// socket beneath: a conn that is not a syscall.Conn is unwrapped with
	// its NetConn method (as *tls.Conn has) until one is found. For such
	// a wrapper, checks of a used conn also Read it once with an expired
	// deadline, to see bytes the wrapper itself has buffered.
	Dial func(ctx context.Context) (net.Conn, error)
	// Network and Addr are used when Dial is nil. Network must be a
	// stream network: "tcp" (the default when empty), "tcp4", "tcp6" or
	// "unix". Addr is also named in log records.
	Network, Addr string

	// Spares is how many fresh, never-used connections to keep dialed
	// ahead, refilled in the background after each hand-out. Zero means
	// none (a hand-out without an idle conn dials). Must not exceed
	// MaxOpen when MaxOpen is set.
	Spares int
	// MaxIdle caps used connections kept for reuse. It also caps fresh
	// connections kept idle when it is above Spares: a lease given back
	// untouched, or a dial that landed after its caller gave up, is kept
	// while fewer than max(Spares, MaxIdle) fresh ones wait. Zero keeps
	// none: a Reuse policy other than ReuseNever then reuses nothing, so
	// set it with one (DefaultMaxIdle is a fair start). Negative is an
	// error.
	MaxIdle int
	// MaxOpen caps all connections: idle (spares and used), in use, and
	// dials in flight. Zero means no cap. Callers beyond it wait in FIFO
	// order until a connection or a slot to dial frees up, or their ctx
	// ends. Negative is an error.
	MaxOpen int

	// IdleTimeout closes an idle connection, spare or used, that has
	// waited this long: set it below the upstream's own idle timeout.
	// Zero means no limit.
	IdleTimeout time.Duration
	// MaxLifetime closes a connection this long after it was dialed; it
	// is checked at hand-out, at release and in the background, and spares
	// past it are replaced. Zero means no limit.
	MaxLifetime time.Duration
	// DialTimeout bounds one dial. Zero means DefaultDialTimeout.
	DialTimeout time.Duration

	// Reuse is the reuse policy. The zero value is ReuseNever.
	Reuse Policy
	// Reset returns a used connection to a neutral state before it is
	// kept (see Reset): required with ReuseIfVerified, ignored otherwise.
	Reset Reset
	// ResetTimeout bounds Reset.Func. Zero means DefaultResetTimeout.
	ResetTimeout time.Duration
	// QuietPeriod is how long Release waits before its final peek on a
	// used connection, so that a late byte already in flight is seen.
	// Zero means DefaultQuietPeriod; negative means no wait. It is
	// skipped when Reset.Drains, since the Reset reads such a byte anyway.
	QuietPeriod time.Duration

	// OnRelease, when set, is called once per released lease (never for
	// a no-op Release), after the conn was kept or closed, on the
	// releasing goroutine, with the session's verdict. It must be quick:
	// a set of pools uses it to count sessions in flight and failures.
	OnRelease func(Verdict)
	// OnDial, when set, is called after each dial, a spare's or a
	// caller's, with its error (nil on success) on the dialing goroutine.
	// It must be quick: a set of pools counts failed dials with it.
	OnDial func(error)

	// Logger receives the spare keeper's state changes, "upstream down"
	// (with the dial error) and "upstream recovered", once per change,
	// and, once, a Reset refused by the server (ErrResetRefused). Nil is
	// silent.
	Logger *slog.Logger
}

// Defaults applied for zero Config fields, and DefaultMaxIdle, a
// starting value for MaxIdle (whose zero keeps none).
const (
	DefaultMaxIdle      = 64
	DefaultDialTimeout  = 5 * time.Second
	DefaultResetTimeout = time.Second
	DefaultQuietPeriod  = time.Millisecond
)

// settings is a validated Config with the defaults applied.
type settings struct {
	dial         func(ctx context.Context) (net.Conn, error)
	addr         string
	spares       int
	maxIdle      int // zero: none kept
	maxOpen      int // zero means no cap
	idleTimeout  time.Duration
	maxLifetime  time.Duration
	dialTimeout  time.Duration
	reuse        Policy
	reset        Reset // zero unless reuse is ReuseIfVerified
	resetTimeout time.Duration
	quiet        time.Duration // <= 0: no wait
	onRelease    func(Verdict)
	onDial       func(error)
	log          *slog.Logger
}

// Validate reports the first bad field of cfg, as New would, without
// starting anything.
func (cfg *Config) Validate() error {
	_, err := cfg.validate()
	return err
}

// validate checks cfg and returns its settings, or an error naming the
// first bad field.
func (cfg *Config) validate() (settings, error) {
	s := settings{
		dial:         cfg.Dial,
		addr:         cfg.Addr,
		spares:       cfg.Spares,
		maxIdle:      cfg.MaxIdle,
		maxOpen:      cfg.MaxOpen,
		idleTimeout:  cfg.IdleTimeout,
		maxLifetime:  cfg.MaxLifetime,
		dialTimeout:  cfg.DialTimeout,
		reuse:        cfg.Reuse,
		resetTimeout: cfg.ResetTimeout,
		quiet:        cfg.QuietPeriod,
		onRelease:    cfg.OnRelease,
		onDial:       cfg.OnDial,
		log:          cfg.Logger,
	}
	if cfg.Dial == nil {
		if cfg.Addr == "" {
			return s, errors.New("pool: Config.Addr: required when Config.Dial is nil")
		}
		network := cfg.Network
		switch network {
		case "":
			network = "tcp"
		case "tcp", "tcp4", "tcp6", "unix":
		default:
			return s, fmt.Errorf("pool: Config.Network: %q is not a stream network (want tcp, tcp4, tcp6 or unix)", cfg.Network)
		}
		addr := cfg.Addr
		s.dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	if cfg.Spares < 0 {
		return s, fmt.Errorf("pool: Config.Spares: %d is negative (0 means no spares)", cfg.Spares)
	}
	if cfg.MaxOpen < 0 {
		return s, fmt.Errorf("pool: Config.MaxOpen: %d is negative (0 means no cap)", cfg.MaxOpen)
	}
	if cfg.MaxIdle < 0 {
		return s, fmt.Errorf("pool: Config.MaxIdle: %d is negative (0 keeps none)", cfg.MaxIdle)
	}
	if cfg.MaxOpen > 0 && cfg.Spares > cfg.MaxOpen {
		return s, fmt.Errorf("pool: Config.Spares: %d exceeds Config.MaxOpen (%d)", cfg.Spares, cfg.MaxOpen)
	}
	for _, d := range [...]struct {
		name string
		v    time.Duration
	}{
		{"IdleTimeout", cfg.IdleTimeout},
		{"MaxLifetime", cfg.MaxLifetime},
		{"DialTimeout", cfg.DialTimeout},
		{"ResetTimeout", cfg.ResetTimeout},
	} {
		if d.v < 0 {
			return s, fmt.Errorf("pool: Config.%s: %v is negative (0 means the default)", d.name, d.v)
		}
	}
	if cfg.Reuse > ReuseIfVerified {
		return s, fmt.Errorf("pool: Config.Reuse: unknown policy %d", uint8(cfg.Reuse))
	}
	if cfg.Reuse == ReuseIfVerified {
		if cfg.Reset.Func == nil {
			return s, errors.New("pool: Config.Reset.Func: required with Reuse ReuseIfVerified")
		}
		if cfg.Reset.Settle < 0 {
			return s, fmt.Errorf("pool: Config.Reset.Settle: %v is negative (0 means none)", cfg.Reset.Settle)
		}
		s.reset = cfg.Reset
	}

	if s.dialTimeout == 0 {
		s.dialTimeout = DefaultDialTimeout
	}
	if s.resetTimeout == 0 {
		s.resetTimeout = DefaultResetTimeout
	}
	if s.quiet == 0 {
		s.quiet = DefaultQuietPeriod
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	} else if s.addr != "" {
		s.log = s.log.With("addr", s.addr)
	}
	return s, nil
}

// freshCap is how many fresh connections may sit idle.
func (s *settings) freshCap() int { return max(s.spares, s.maxIdle) }

// sweepEvery is the period of the background sweep: often enough to honour
// IdleTimeout and MaxLifetime within half their length, at most a second
// (which also bounds how long a dead idle conn holds its descriptor).
func (s *settings) sweepEvery() time.Duration {
	d := time.Second
	for _, t := range [...]time.Duration{s.idleTimeout, s.maxLifetime} {
		if t > 0 && t/2 < d {
			d = t / 2
		}
	}
	return max(d, 5*time.Millisecond)
}
