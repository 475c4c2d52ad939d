package pool

import (
	"context"
	"flag"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	dial := func(context.Context) (net.Conn, error) { return nil, errDown }
	reset := func(context.Context, net.Conn) error { return nil }
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; empty: valid
	}{
		{"addr only", Config{Addr: "127.0.0.1:1"}, ""},
		{"dial only", Config{Dial: dial}, ""},
		{"everything", Config{Addr: "x:1", Network: "tcp6", Spares: 2, MaxOpen: 2, MaxIdle: 1,
			IdleTimeout: time.Second, MaxLifetime: time.Minute, DialTimeout: time.Second,
			Reuse: ReuseIfVerified, Reset: Reset{Func: reset}, ResetTimeout: time.Second, QuietPeriod: -1}, ""},
		{"unix", Config{Network: "unix", Addr: "/tmp/x.sock"}, ""},
		{"reset ignored without verified", Config{Dial: dial, MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, Reset: Reset{Func: reset}}, ""},
		{"nowhere to dial", Config{}, "pool: Config.Addr: required when Config.Dial is nil"},
		{"datagram network", Config{Network: "udp", Addr: "x:1"}, "pool: Config.Network:"},
		{"negative spares", Config{Dial: dial, Spares: -1}, "pool: Config.Spares:"},
		{"negative max open", Config{Dial: dial, MaxOpen: -1}, "pool: Config.MaxOpen:"},
		{"spares above max open", Config{Dial: dial, Spares: 3, MaxOpen: 2}, "pool: Config.Spares: 3 exceeds Config.MaxOpen (2)"},
		{"negative idle timeout", Config{Dial: dial, IdleTimeout: -1}, "pool: Config.IdleTimeout:"},
		{"negative max lifetime", Config{Dial: dial, MaxLifetime: -1}, "pool: Config.MaxLifetime:"},
		{"negative dial timeout", Config{Dial: dial, DialTimeout: -1}, "pool: Config.DialTimeout:"},
		{"negative reset timeout", Config{Dial: dial, ResetTimeout: -1}, "pool: Config.ResetTimeout:"},
		{"negative max idle", Config{Dial: dial, MaxIdle: -1}, "pool: Config.MaxIdle: -1 is negative"},
		// MaxIdle zero keeps none, as the proxy's -max-idle 0 does: valid
		// with a reuse policy, which then reuses nothing.
		{"reuse without max idle", Config{Dial: dial, Reuse: ReuseIfClean}, ""},
		{"unknown policy", Config{Dial: dial, MaxIdle: DefaultMaxIdle, Reuse: 9}, "pool: Config.Reuse: unknown policy 9"},
		{"verified without reset", Config{Dial: dial, MaxIdle: DefaultMaxIdle, Reuse: ReuseIfVerified}, "pool: Config.Reset.Func: required with Reuse ReuseIfVerified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if p != nil {
				p.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: got %v; want no error", err)
			case tt.want != "" && err == nil:
				t.Fatalf("New: got no error; want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("New: got %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := (&Config{Addr: "x:1"}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.maxIdle != 0 || s.dialTimeout != DefaultDialTimeout ||
		s.resetTimeout != DefaultResetTimeout || s.quiet != DefaultQuietPeriod {
		t.Errorf("got maxIdle %d, dialTimeout %v, resetTimeout %v, quiet %v; want 0 (none) and the defaults",
			s.maxIdle, s.dialTimeout, s.resetTimeout, s.quiet)
	}
	s, _ = (&Config{Addr: "x:1", QuietPeriod: -1}).validate()
	if s.quiet > 0 {
		t.Errorf("negative QuietPeriod: got %v; want no wait", s.quiet)
	}
}

func TestPolicyUnmarshalText(t *testing.T) {
	parse := func(s string) (Policy, error) {
		var p Policy
		err := p.UnmarshalText([]byte(s))
		return p, err
	}
	for _, p := range []Policy{ReuseNever, ReuseIfClean, ReuseIfVerified} {
		got, err := parse(p.String())
		if err != nil || got != p {
			t.Errorf("UnmarshalText(%q): got %v, %v; want %v", p.String(), got, err, p)
		}
	}
	if got, err := parse(" Clean "); err != nil || got != ReuseIfClean {
		t.Errorf(`UnmarshalText(" Clean "): got %v, %v; want clean`, got, err)
	}
	if _, err := parse("always"); err == nil || !strings.Contains(err.Error(), `"always"`) {
		t.Errorf(`UnmarshalText("always"): got %v; want an error naming the input`, err)
	}
	if got := Policy(7).String(); got != "Policy(7)" {
		t.Errorf("Policy(7).String(): got %q", got)
	}
}

func TestPolicyFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var p Policy
	fs.TextVar(&p, "reuse", ReuseNever, "")
	if err := fs.Parse([]string{"-reuse=verified"}); err != nil {
		t.Fatal(err)
	}
	if p != ReuseIfVerified {
		t.Errorf("got %v; want verified", p)
	}
	if err := fs.Parse([]string{"-reuse=sometimes"}); err == nil {
		t.Error("got no error for an unknown policy")
	}
	if _, err := Policy(9).MarshalText(); err == nil {
		t.Error("MarshalText(9): got no error")
	}
}

func TestStrings(t *testing.T) {
	for o := OutcomeNone; o <= ClosedPoolClosed; o++ {
		if s := o.String(); s == "" || strings.HasPrefix(s, "Outcome(") {
			t.Errorf("Outcome %d has no name: %q", o, s)
		}
	}
	if got := Outcome(99).String(); got != "Outcome(99)" {
		t.Errorf("got %q", got)
	}
	if !KeptUsed.Kept() || !KeptFresh.Kept() || ClosedFull.Kept() || OutcomeNone.Kept() {
		t.Error("Kept: wrong answer")
	}
	want := map[Source]string{0: "none", SourceReused: "reused", SourceSpare: "spare", SourceDial: "dial", 9: "Source(9)"}
	for s, w := range want {
		if got := s.String(); got != w {
			t.Errorf("Source(%d).String(): got %q; want %q", s, got, w)
		}
	}
}
