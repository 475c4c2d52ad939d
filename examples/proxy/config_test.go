package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(nil): %v", err)
	}
	if cfg.listen != "127.0.0.1:7070" || len(cfg.upstreams) != 0 || cfg.reuse != pool.ReuseNever ||
		cfg.shutdownGrace != 10*time.Second || cfg.logLevel != slog.LevelInfo ||
		cfg.upstreamTLS != nil || cfg.listenTLS != nil || cfg.metrics != "" || cfg.clientKeepalive != 15*time.Second ||
		cfg.protocol != protocolNone {
		t.Errorf("defaults: got %+v", cfg)
	}
}

// TestParseConfigSources sets the same flags from the command line, from
// RELAY_* environment variables and from a -config file, and checks the
// precedence: command line, then environment, then file.
func TestParseConfigSources(t *testing.T) {
	file := writeFile(t, "relay.conf", `# a comment
listen 127.0.0.1:0
upstream 10.0.0.1:6379
spares 1
max-open 11
shutdown-grace 3s
fence-send PING\r\n
fence-expect +PONG\r\n
log-level debug # trailing comment
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*config) bool
	}{
		{
			name: "args",
			args: []string{"-listen", "127.0.0.1:0", "-upstream", "10.0.0.1:6379", "-spares", "7",
				"-max-idle", "0", "-reuse", "clean", "-session-idle-timeout", "1m", "-log-level", "warn"},
			want: func(c *config) bool {
				return c.listen == "127.0.0.1:0" && formatServers(c.upstreams) == "10.0.0.1:6379" && c.spares == 7 &&
					c.maxIdle == 0 && c.reuse == pool.ReuseIfClean && c.sessionIdle == time.Minute &&
					c.logLevel == slog.LevelWarn
			},
		},
		{
			name: "env",
			env: map[string]string{"RELAY_LISTEN": "127.0.0.1:0", "RELAY_SPARES": "2", "RELAY_MAX_SESSIONS": "5",
				"RELAY_FENCE_SEND": `mn\r\n`, "RELAY_FENCE_EXPECT": `MN\r\n`, "RELAY_UPSTREAM_TLS": "true",
				"RELAY_UPSTREAM": "db.internal:11211"},
			want: func(c *config) bool {
				return c.listen == "127.0.0.1:0" && c.spares == 2 && c.maxSessions == 5 &&
					string(c.fenceSend) == "mn\r\n" && string(c.fenceExpect) == "MN\r\n" &&
					c.reuse == pool.ReuseIfVerified && c.upstreamTLS != nil &&
					c.upstreamTLS.ServerName == "" /* each server's host, at dial */ && c.upstreamTLS.ClientSessionCache != nil
			},
		},
		{
			name: "file",
			args: []string{"-config", file},
			want: func(c *config) bool {
				return c.listen == "127.0.0.1:0" && formatServers(c.upstreams) == "10.0.0.1:6379" && c.spares == 1 &&
					c.maxOpen == 11 && c.shutdownGrace == 3*time.Second &&
					string(c.fenceSend) == "PING\r\n" && string(c.fenceExpect) == "+PONG\r\n" &&
					c.reuse == pool.ReuseIfVerified && c.logLevel == slog.LevelDebug
			},
		},
		{
			name: "protocol selects verified",
			args: []string{"-protocol", "redis"},
			want: func(c *config) bool {
				return c.protocol == protocolRedis && c.reuse == pool.ReuseIfVerified && c.reset().Drains
			},
		},
		{
			name: "protocol with reuse never keeps reuse off",
			args: []string{"-protocol", "redis", "-reuse", "never"},
			want: func(c *config) bool { return c.protocol == protocolRedis && c.reuse == pool.ReuseNever },
		},
		{
			name: "protocol from env, any case",
			env:  map[string]string{"RELAY_PROTOCOL": "Memcached"},
			want: func(c *config) bool { return c.protocol == protocolMemcached && c.reuse == pool.ReuseIfVerified },
		},
		{
			name: "file named by env",
			env:  map[string]string{"RELAY_CONFIG": file},
			want: func(c *config) bool { return c.spares == 1 && c.maxOpen == 11 },
		},
		{
			name: "args win over env, env over file",
			args: []string{"-config", file, "-spares", "3"},
			env:  map[string]string{"RELAY_SPARES": "2", "RELAY_MAX_OPEN": "12"},
			want: func(c *config) bool { return c.spares == 3 && c.maxOpen == 12 && c.shutdownGrace == 3*time.Second },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.args, tt.env)
			if !tt.want(cfg) {
				t.Errorf("parseConfig(%q) with env %v: got %+v", tt.args, tt.env, cfg)
			}
		})
	}
}

// mustParse sets env for the test, then parses args; an error fails the
// test.
func mustParse(t *testing.T, args []string, env map[string]string) *config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := parseConfig(args, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(%q) with env %v: %v", args, env, err)
	}
	return cfg
}

// TestRunBadConfig checks that every bad value fails run at start, before
// anything listens or logs, with a *usageError naming the flag.
func TestRunBadConfig(t *testing.T) {
	good := newTestCert(t)
	other := newTestCert(t)
	notPEM := writeFile(t, "ca.pem", "not a certificate\n")
	badFile := writeFile(t, "bad.conf", "spares lots\n")
	unknownFile := writeFile(t, "unknown.conf", "sparez 3\n")
	up := []string{"-upstream", "127.0.0.1:1", "-upstream-tls"}

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the error names this (a flag, usually)
	}{
		{"spares not a number", []string{"-spares", "x"}, nil, `invalid value "x" for flag -spares`},
		{"spares negative", []string{"-spares", "-1"}, nil, `invalid value "-1" for flag -spares: must not be negative`},
		{"max-idle negative", []string{"-max-idle", "-2"}, nil, "-max-idle"},
		{"max-open negative", []string{"-max-open", "-1"}, nil, "-max-open"},
		{"max-sessions negative", []string{"-max-sessions", "-1"}, nil, "-max-sessions"},
		{"spares over max-open", []string{"-spares", "5", "-max-open", "2"}, nil, "-spares"},
		{"idle-timeout negative", []string{"-idle-timeout", "-1s"}, nil, "-idle-timeout"},
		{"max-lifetime no unit", []string{"-max-lifetime", "5"}, nil, "-max-lifetime"},
		{"dial-timeout", []string{"-dial-timeout", "soon"}, nil, "-dial-timeout"},
		{"session-idle-timeout", []string{"-session-idle-timeout", "-1m"}, nil, "-session-idle-timeout"},
		{"drain-timeout", []string{"-drain-timeout", "x"}, nil, "-drain-timeout"},
		{"shutdown-grace", []string{"-shutdown-grace", "-5s"}, nil, "-shutdown-grace"},
		{"reuse unknown", []string{"-reuse", "always"}, nil, `invalid value "always" for flag -reuse`},
		{"reuse verified without fence", []string{"-reuse", "verified"}, nil, "-fence-send"},
		{"reuse verified without fence names protocol", []string{"-reuse", "verified"}, nil, "-protocol"},
		{"fence with reuse never", []string{"-reuse", "never", "-fence-send", "a", "-fence-expect", "b"}, nil, "-reuse verified"},
		{"protocol unknown", []string{"-protocol", "http"}, nil, `invalid value "http" for flag -protocol: want none, redis or memcached`},
		{"protocol with reuse clean", []string{"-protocol", "redis", "-reuse", "clean"}, nil, "-reuse clean with -protocol redis"},
		{"protocol with a fence", []string{"-protocol", "memcached", "-fence-send", "a", "-fence-expect", "b"}, nil, "-protocol memcached exclude each other"},
		{"env bad protocol", nil, map[string]string{"RELAY_PROTOCOL": "sql"}, "RELAY_PROTOCOL"},
		{"fence with reuse clean", []string{"-reuse", "clean", "-fence-send", "a", "-fence-expect", "b"}, nil, "-reuse verified"},
		{"fence-send alone", []string{"-fence-send", `PING\r\n`}, nil, "-fence-expect"},
		{"fence-expect alone", []string{"-fence-expect", `+PONG\r\n`}, nil, "-fence-send"},
		{"fence bad escape", []string{"-fence-send", `PING\q`}, nil, "-fence-send"},
		{"fence bad hex", []string{"-fence-expect", `\xZZ`}, nil, "-fence-expect"},
		{"client-keepalive negative", []string{"-client-keepalive", "-1s"}, nil, `invalid value "-1s" for flag -client-keepalive: must not be negative`},
		{"client-keepalive no unit", []string{"-client-keepalive", "30"}, nil, `invalid value "30" for flag -client-keepalive`},
		{"client-keepalive too long", []string{"-client-keepalive", "10h"}, nil, `invalid value "10h" for flag -client-keepalive: more than 32767s`},
		{"env client-keepalive too long", nil, map[string]string{"RELAY_CLIENT_KEEPALIVE": "10h"}, "RELAY_CLIENT_KEEPALIVE"},
		{"env bad client-keepalive", nil, map[string]string{"RELAY_CLIENT_KEEPALIVE": "-5s"}, "RELAY_CLIENT_KEEPALIVE"},
		{"listen not host:port", []string{"-listen", "7070"}, nil, "-listen"},
		{"upstream bad port", []string{"-upstream", "db:99999"}, nil, "-upstream"},
		{"metrics not host:port", []string{"-metrics", "nowhere"}, nil, "-metrics"},
		{"log-level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"unknown flag", []string{"-sparez", "3"}, nil, "-sparez"},
		{"positional argument", []string{"127.0.0.1:6379"}, nil, "unexpected argument"},
		{"upstream-tls without upstream", []string{"-upstream-tls"}, nil, "-upstream"},
		{"upstream-tls-ca without upstream-tls", []string{"-upstream", "127.0.0.1:1", "-upstream-tls-ca", good.certFile}, nil, "-upstream-tls-ca needs -upstream-tls"},
		{"upstream-tls-insecure without upstream-tls", []string{"-upstream-tls-insecure"}, nil, "-upstream-tls-insecure"},
		{"upstream-tls-curves without upstream-tls", []string{"-upstream", "127.0.0.1:1", "-upstream-tls-curves", "X25519"}, nil, "-upstream-tls-curves needs -upstream-tls"},
		{"upstream-tls-curves unknown", append(up, "-upstream-tls-curves", "X25519,X448"), nil, `invalid value "X25519,X448" for flag -upstream-tls-curves: unknown group "X448"`},
		{"upstream-tls-curves Go 1.26 only", append(up, "-upstream-tls-curves", "SecP256r1MLKEM768"), nil, `-upstream-tls-curves: unknown group "SecP256r1MLKEM768"`},
		{"upstream-tls-curves empty element", append(up, "-upstream-tls-curves", "X25519,,P256"), nil, "-upstream-tls-curves: empty element"},
		{"upstream-tls-curves trailing comma", append(up, "-upstream-tls-curves", "X25519,"), nil, "-upstream-tls-curves: empty element"},
		{"upstream-tls-curves duplicate", append(up, "-upstream-tls-curves", "X25519,x25519"), nil, `-upstream-tls-curves: group "x25519" given twice`},
		{"upstream-tls-curves duplicate alias", append(up, "-upstream-tls-curves", "P256,P-256"), nil, `-upstream-tls-curves: group "P-256" given twice`},
		{"env bad upstream-tls-curves", up, map[string]string{"RELAY_UPSTREAM_TLS_CURVES": "P224"}, `"P224"`},
		{"upstream-tls-ca missing", append(up, "-upstream-tls-ca", "/nonexistent/ca.pem"), nil, "-upstream-tls-ca"},
		{"upstream-tls-ca not PEM", append(up, "-upstream-tls-ca", notPEM), nil, "-upstream-tls-ca"},
		{"upstream-tls-ca and insecure", append(up, "-upstream-tls-ca", good.certFile, "-upstream-tls-insecure"), nil, "-upstream-tls-insecure"},
		{"tls-cert without key", []string{"-tls-cert", good.certFile}, nil, "-tls-key"},
		{"tls-key without cert", []string{"-tls-key", good.keyFile}, nil, "-tls-cert"},
		{"tls-cert and key mismatch", []string{"-tls-cert", good.certFile, "-tls-key", other.keyFile}, nil, "-tls-cert"},
		{"tls-cert missing", []string{"-tls-cert", "/nonexistent/c.pem", "-tls-key", good.keyFile}, nil, "-tls-cert"},
		{"env bad value", nil, map[string]string{"RELAY_MAX_OPEN": "many"}, "RELAY_MAX_OPEN"},
		{"env bad reuse", nil, map[string]string{"RELAY_REUSE": "sometimes"}, `"reuse"`},
		{"config file bad value", []string{"-config", badFile}, nil, `"spares"`},
		{"config file unknown flag", []string{"-config", unknownFile}, nil, `"sparez"`},
		{"config file missing", []string{"-config", "/nonexistent/relay.conf"}, nil, "-config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, &stdout, &stderr)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("run(%q): got %T %v; want *usageError", tt.args, err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q): got %q; want it to name %s", tt.args, err, tt.want)
			}
			if stderr.Len() > 0 || stdout.Len() > 0 {
				t.Errorf("run(%q) wrote before failing (stdout %q, stderr %q); want nothing", tt.args, stdout.String(), stderr.String())
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatalf("run(-h): got %v; want nil", err)
	}
	usage := stdout.String()
	for _, want := range []string{
		"-listen", "(default 127.0.0.1:7070)", "-client-keepalive", "(default 15s)", "-upstream", "-reuse", "(default never)", "-spares", "-max-idle",
		"-max-open", "-idle-timeout", "-max-lifetime", "-dial-timeout", "-get-timeout",
		"-session-idle-timeout", "-drain-timeout", "-max-sessions", "-shutdown-grace", "(default 10s)",
		"-fence-send", "-fence-expect", "-upstream-tls", "-upstream-tls-ca", "-upstream-tls-server-name",
		"-upstream-tls-insecure", "-upstream-tls-curves", "X25519MLKEM768", "OpenSSL 3.0", "-tls-cert", "-tls-key", "-metrics", "-log-level", "(default info)",
		"-config", "RELAY_", "-reuse clean",
		"-balance", "(default round-robin)", "least-conn", "client-ip", "-health-every", "-health-timeout", "-health-rise", "(default 2)",
		"-health-fall", "(default 3)", "-health-send", "-health-expect", `PING\r\n`, "-resolve-every", "(default 30s)",
		"-max-sessions-per-server", "per try", "Several upstreams:", "@2", "Reload (SIGHUP", "need a restart",
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage text lacks %q; got:\n%s", want, usage)
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("run(-h) wrote to stderr: %q; want nothing", stderr.String())
	}
}

// TestParseConfigClientKeepalive checks -client-keepalive from each
// source: Go's 15s by default, 0 for off, up to the kernel's limit.
func TestParseConfigClientKeepalive(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want time.Duration
	}{
		{"default", nil, nil, 15 * time.Second},
		{"off", []string{"-client-keepalive", "0"}, nil, 0},
		{"minute", []string{"-client-keepalive", "1m"}, nil, time.Minute},
		{"sub-second", []string{"-client-keepalive", "500ms"}, nil, 500 * time.Millisecond},
		{"limit", []string{"-client-keepalive", "32767s"}, nil, maxClientKeepalive},
		{"env", nil, map[string]string{"RELAY_CLIENT_KEEPALIVE": "30s"}, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.args, tt.env)
			if cfg.clientKeepalive != tt.want {
				t.Errorf("parseConfig(%q) with env %v: clientKeepalive %v; want %v", tt.args, tt.env, cfg.clientKeepalive, tt.want)
			}
		})
	}
}

// TestParseConfigUpstreamTLSCurves checks that -upstream-tls-curves sets
// the upstream's tls.Config.CurvePreferences in the order given, from
// any case and the P-256 spellings, and that empty or unset leaves Go's
// defaults.
func TestParseConfigUpstreamTLSCurves(t *testing.T) {
	up := []string{"-upstream", "127.0.0.1:1", "-upstream-tls"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []tls.CurveID
	}{
		{"unset", up, nil, nil},
		{"empty", append(up, "-upstream-tls-curves", ""), nil, nil},
		{"X25519", append(up, "-upstream-tls-curves", "X25519"), nil, []tls.CurveID{tls.X25519}},
		{"hybrid then classic", append(up, "-upstream-tls-curves", "X25519MLKEM768,X25519"), nil,
			[]tls.CurveID{tls.X25519MLKEM768, tls.X25519}},
		{"any case and P-nnn", append(up, "-upstream-tls-curves", "p-521,P384,x25519mlkem768,p-256"), nil,
			[]tls.CurveID{tls.CurveP521, tls.CurveP384, tls.X25519MLKEM768, tls.CurveP256}},
		{"spaces around names", append(up, "-upstream-tls-curves", " P521 , x25519"), nil,
			[]tls.CurveID{tls.CurveP521, tls.X25519}},
		{"env", up, map[string]string{"RELAY_UPSTREAM_TLS_CURVES": "X25519,P-256"},
			[]tls.CurveID{tls.X25519, tls.CurveP256}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.args, tt.env)
			if got := cfg.upstreamTLS.CurvePreferences; !slices.Equal(got, tt.want) {
				t.Errorf("parseConfig(%q) with env %v: CurvePreferences %v; want %v", tt.args, tt.env, got, tt.want)
			}
		})
	}

	// The value prints the way it parses back.
	ids := []tls.CurveID{tls.CurveP384, tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP521}
	s := curvesValue{&ids}.String()
	var back []tls.CurveID
	if err := (curvesValue{&back}).Set(s); err != nil || !slices.Equal(back, ids) {
		t.Errorf("Set(String()) of %v: String %q, got %v, %v; want it back", ids, s, back, err)
	}
}

func TestUnescapeBytes(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`PING\r\n`, "PING\r\n", true},
		{`+PONG\r\n`, "+PONG\r\n", true},
		{`a\tb\\c`, "a\tb\\c", true},
		{`\x00\x7f\xFF`, "\x00\x7f\xff", true},
		{`plain`, "plain", true},
		{``, "", true},
		{`\`, "", false},
		{`\x4`, "", false},
		{`\xg0`, "", false},
		{`\a`, "", false},
	}
	for _, tt := range tests {
		got, err := unescapeBytes(tt.in)
		if (err == nil) != tt.ok || (tt.ok && string(got) != tt.want) {
			t.Errorf("unescapeBytes(%q): got %q, %v; want %q, ok=%t", tt.in, got, err, tt.want, tt.ok)
			continue
		}
		if tt.ok {
			if back, _ := unescapeBytes(escapeBytes(got)); string(back) != tt.want {
				t.Errorf("unescapeBytes(escapeBytes(%q)): got %q; want it back", tt.want, back)
			}
		}
	}
}
