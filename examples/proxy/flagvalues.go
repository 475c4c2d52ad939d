package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/pool"
)

// The flag.Value types below validate in Set, so that a bad value fails
// the same way from the command line, the environment and the config
// file, and the flag package names the flag: invalid value "x" for flag
// -spares: not a whole number. Their String methods accept a zero
// receiver, as flag.PrintDefaults requires.

// addrValue is a host:port. The host may be empty (all interfaces); the
// whole value may be empty only when empty is set.
type addrValue struct {
	s     *string
	empty bool
}

func (v addrValue) String() string {
	if v.s == nil {
		return ""
	}
	return *v.s
}

func (v addrValue) Set(s string) error {
	if s == "" && v.empty {
		*v.s = s
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	*v.s = s
	return nil
}

// policyValue is a pool.Policy by name.
type policyValue struct{ p *pool.Policy }

func (v policyValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v policyValue) Set(s string) error {
	if err := v.p.UnmarshalText([]byte(s)); err != nil {
		return errors.New("want never, clean or verified")
	}
	return nil
}

// protocol names what the upstream speaks, for its reset (-protocol).
type protocol string

const (
	protocolNone      protocol = "none"
	protocolRedis     protocol = "redis"
	protocolMemcached protocol = "memcached"
)

// reset returns the protocol's pool.Reset (zero for none).
func (p protocol) reset() pool.Reset {
	switch p {
	case protocolRedis:
		return pool.RedisReset()
	case protocolMemcached:
		return pool.MemcachedReset()
	}
	return pool.Reset{}
}

// protocolValue is a protocol by name.
type protocolValue struct{ p *protocol }

func (v protocolValue) String() string {
	if v.p == nil {
		return ""
	}
	return string(*v.p)
}

func (v protocolValue) Set(s string) error {
	switch p := protocol(strings.ToLower(strings.TrimSpace(s))); p {
	case protocolNone, protocolRedis, protocolMemcached:
		*v.p = p
		return nil
	}
	return errors.New("want none, redis or memcached")
}

// countValue is a non-negative int.
type countValue struct{ n *int }

func (v countValue) String() string {
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v countValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return errors.New("not a whole number")
	case n < 0:
		return errors.New("must not be negative")
	}
	*v.n = n
	return nil
}

// durationValue is a non-negative time.Duration.
type durationValue struct {
	d   *time.Duration
	max time.Duration // 0: no bound
}

func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New("not a duration (e.g. 500ms, 30s, 5m)")
	case d < 0:
		return errors.New("must not be negative")
	case v.max > 0 && d > v.max:
		return fmt.Errorf("more than %s", fmtSeconds(v.max))
	}
	*v.d = d
	return nil
}

// fmtSeconds prints a whole number of seconds as "32767s", not "9h6m7s".
func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%ds", d/time.Second) }

// curveNames are the TLS key-exchange groups -upstream-tls-curves
// accepts: the name String prints, and an alias for the NIST curves.
// Both match in any case. SecP256r1MLKEM768 and SecP384r1MLKEM1024 are
// left out: crypto/tls has them only from Go 1.26, and the module's
// go line is 1.25.
var curveNames = []struct {
	name, alias string
	id          tls.CurveID
}{
	{"X25519MLKEM768", "", tls.X25519MLKEM768},
	{"X25519", "", tls.X25519},
	{"P256", "P-256", tls.CurveP256},
	{"P384", "P-384", tls.CurveP384},
	{"P521", "P-521", tls.CurveP521},
}

// curvesHelp lists the accepted names for errors and the usage text.
var curvesHelp = func() string {
	names := make([]string, len(curveNames))
	for i, c := range curveNames {
		names[i] = c.name
	}
	last := len(names) - 1
	return strings.Join(names[:last], ", ") + " or " + names[last]
}()

// curvesValue is a comma-separated list of TLS key-exchange groups by
// name (any case; P-256 for P256 and so on), kept in the order given.
// crypto/tls ignores that order (see tls.Config.CurvePreferences): it
// offers the groups listed in its own order of preference, hybrid
// post-quantum first. Empty is nil: Go's defaults. An unknown name, an
// empty element or a name given twice is an error naming the element.
type curvesValue struct{ c *[]tls.CurveID }

func (v curvesValue) String() string {
	if v.c == nil {
		return ""
	}
	names := make([]string, len(*v.c))
	for i, id := range *v.c {
		names[i] = curveName(id)
	}
	return strings.Join(names, ",")
}

func (v curvesValue) Set(s string) error {
	if s == "" {
		*v.c = nil
		return nil
	}
	var ids []tls.CurveID
	for elem := range strings.SplitSeq(s, ",") {
		name := strings.TrimSpace(elem)
		if name == "" {
			return errors.New("empty element (want a comma-separated list of " + curvesHelp + ")")
		}
		id, ok := curveByName(name)
		if !ok {
			return fmt.Errorf("unknown group %q (want %s)", name, curvesHelp)
		}
		if slices.Contains(ids, id) {
			return fmt.Errorf("group %q given twice", name)
		}
		ids = append(ids, id)
	}
	*v.c = ids
	return nil
}

// curveByName looks name up in curveNames, ignoring case.
func curveByName(name string) (tls.CurveID, bool) {
	for _, c := range curveNames {
		if strings.EqualFold(name, c.name) || strings.EqualFold(name, c.alias) {
			return c.id, true
		}
	}
	return 0, false
}

// curveName is the name String prints for id: the flag's own spelling,
// so that the printed value parses back.
func curveName(id tls.CurveID) string {
	for _, c := range curveNames {
		if c.id == id {
			return c.name
		}
	}
	return id.String()
}

// levelValue is a slog.Level by lower-case name.
type levelValue struct{ l *slog.Level }

func (v levelValue) String() string {
	if v.l == nil {
		return ""
	}
	return strings.ToLower(v.l.String())
}

func (v levelValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug":
		*v.l = slog.LevelDebug
	case "info":
		*v.l = slog.LevelInfo
	case "warn", "warning":
		*v.l = slog.LevelWarn
	case "error":
		*v.l = slog.LevelError
	default:
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

// bytesValue is a byte string written with escapes, so that protocol
// markers fit on a command line, in an environment variable and on a
// config file line: \r \n \t \\ and \xNN.
type bytesValue struct{ b *[]byte }

func (v *bytesValue) String() string {
	if v == nil || v.b == nil {
		return ""
	}
	return escapeBytes(*v.b)
}

func (v *bytesValue) Set(s string) error {
	b, err := unescapeBytes(s)
	if err != nil {
		return err
	}
	*v.b = b
	return nil
}

// unescapeBytes decodes \r, \n, \t, \\ and \xNN; any other backslash
// sequence is an error, so that a typo is not sent to a server.
func unescapeBytes(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 == len(s) {
			return nil, errors.New(`trailing \`)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+3 > len(s) {
				return nil, errors.New(`\x needs two hex digits`)
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`\x%s: not two hex digits`, s[i+1:i+3])
			}
			out = append(out, byte(n))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c (want \r \n \t \\ \xNN)`, s[i])
		}
	}
	return out, nil
}

// escapeBytes is the inverse of unescapeBytes.
func escapeBytes(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\\':
			sb.WriteString(`\\`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// upstreamsValue is -upstream: a comma-separated list of host:port, each
// optionally followed by @W, a weight from 1 to balance.MaxWeight. Empty
// is nil (the demo upstream). Host names are allowed and resolved later,
// by the set; an empty host, a port that is not a number from 1 to
// 65535, a bad weight, an empty element or a server given twice is an
// error naming the element.
type upstreamsValue struct{ s *[]balance.Server }

func (v upstreamsValue) String() string {
	if v.s == nil {
		return ""
	}
	return formatServers(*v.s)
}

func (v upstreamsValue) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		*v.s = nil
		return nil
	}
	var out []balance.Server
	seen := make(map[string]bool)
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return errors.New("empty element (want a comma-separated list of host:port or host:port@weight)")
		}
		addr, weight := elem, 1
		if i := strings.LastIndexByte(elem, '@'); i >= 0 {
			addr = elem[:i]
			w, err := strconv.Atoi(elem[i+1:])
			if err != nil || w < 1 || w > balance.MaxWeight {
				return fmt.Errorf("%q: weight must be a whole number from 1 to %d", elem, balance.MaxWeight)
			}
			weight = w
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%q: want host:port", elem)
		}
		if host == "" {
			return fmt.Errorf("%q: no host", elem)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port must be a number from 1 to 65535", elem)
		}
		key := net.JoinHostPort(strings.ToLower(host), port)
		if seen[key] {
			return fmt.Errorf("%q given twice", addr)
		}
		seen[key] = true
		out = append(out, balance.Server{Addr: addr, Weight: weight})
	}
	*v.s = out
	return nil
}

// formatServers prints a server list as -upstream takes it, the weight
// only when it is not 1.
func formatServers(list []balance.Server) string {
	var sb strings.Builder
	for i, sv := range list {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(sv.Addr)
		if sv.Weight > 1 {
			sb.WriteByte('@')
			sb.WriteString(strconv.Itoa(sv.Weight))
		}
	}
	return sb.String()
}

// balanceValue is a balance.Policy by name (-balance).
type balanceValue struct{ p *balance.Policy }

func (v balanceValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v balanceValue) Set(s string) error {
	if err := v.p.UnmarshalText([]byte(strings.ToLower(strings.TrimSpace(s)))); err != nil {
		return errors.New("want round-robin, least-conn, random or client-ip")
	}
	return nil
}

// positiveValue is an int of at least 1.
type positiveValue struct{ n *int }

func (v positiveValue) String() string {
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v positiveValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return errors.New("not a whole number")
	case n < 1:
		return errors.New("must be at least 1")
	}
	*v.n = n
	return nil
}
