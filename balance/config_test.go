package balance

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// TestNewValidates: each bad field is an error from New naming it.
func TestNewValidates(t *testing.T) {
	ok := []Server{{Addr: "127.0.0.1:1"}}
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no servers", Config{}, "Config.Servers"},
		{"addr without port", Config{Servers: []Server{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1"}}}, "Config.Servers[1].Addr"},
		{"addr without host", Config{Servers: []Server{{Addr: ":80"}}}, "Config.Servers[0].Addr"},
		{"port zero", Config{Servers: []Server{{Addr: "127.0.0.1:0"}}}, "Config.Servers[0].Addr"},
		{"port too big", Config{Servers: []Server{{Addr: "127.0.0.1:65536"}}}, "Config.Servers[0].Addr"},
		{"weight too big", Config{Servers: []Server{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:2", Weight: 300}}}, "Config.Servers[1].Weight"},
		{"negative weight", Config{Servers: []Server{{Addr: "127.0.0.1:1", Weight: -1}}}, "Config.Servers[0].Weight"},
		{"bad network", Config{Servers: ok, Network: "udp"}, "Config.Network"},
		{"unknown policy", Config{Servers: ok, Policy: Policy(9)}, "Config.Policy"},
		{"negative MaxSessions", Config{Servers: ok, MaxSessions: -1}, "Config.MaxSessions"},
		{"negative Ejection", Config{Servers: ok, Passive: Passive{Ejection: -time.Second}}, "Config.Passive.Ejection"},
		{"negative MaxEjection", Config{Servers: ok, Passive: Passive{MaxEjection: -time.Second}}, "Config.Passive.MaxEjection"},
		{"negative Check.Every", Config{Servers: ok, Check: Check{Every: -time.Second}}, "Config.Check.Every"},
		{"negative Check.Timeout", Config{Servers: ok, Check: Check{Timeout: -time.Second}}, "Config.Check.Timeout"},
		{"negative Rise", Config{Servers: ok, Check: Check{Every: time.Second, Rise: -1}}, "Config.Check.Rise"},
		{"negative Fall", Config{Servers: ok, Check: Check{Every: time.Second, Fall: -1}}, "Config.Check.Fall"},
		{"Expect without Send", Config{Servers: ok, Check: Check{Every: time.Second, Expect: []byte("+PONG")}}, "Config.Check.Expect"},
		{"Expect too long", Config{Servers: ok, Check: Check{Every: time.Second, Send: []byte("x"), Expect: bytes.Repeat([]byte("x"), MaxCheckExpect+1)}}, "Config.Check.Expect"},
		{"bad pool template", Config{Servers: ok, Pool: pool.Config{Spares: -1}}, "Config.Pool"},
		{"pool template Spares over MaxOpen", Config{Servers: ok, Pool: pool.Config{Spares: 3, MaxOpen: 2}}, "Config.Pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := New(tt.cfg)
			if err == nil {
				set.Close()
				t.Fatalf("New: got nil error; want one naming %s", tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New: got %q; want an error naming %s", err, tt.field)
			}
		})
	}
}

// TestNewUnresolvableName: a name that does not resolve is an error
// naming its entry, and so is an empty answer.
func TestNewUnresolvableName(t *testing.T) {
	resolve := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "empty.test":
			return nil, nil
		case "ok.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, errors.New("no such host (test)")
	}
	for _, tt := range []struct{ addr, want string }{
		{"bad.test:80", "no such host (test)"},
		{"empty.test:80", "no addresses"},
	} {
		set, err := New(Config{
			Servers: []Server{{Addr: "ok.test:1"}, {Addr: tt.addr}},
			Resolve: resolve, ResolveEvery: -1,
		})
		if err == nil {
			set.Close()
			t.Fatalf("New with %s: got nil error", tt.addr)
		}
		if !strings.Contains(err.Error(), "Config.Servers[1]") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with %s: got %q; want it to name Config.Servers[1] and say %q", tt.addr, err, tt.want)
		}
	}
}

// TestPolicyText: every policy's name round-trips; an unknown name or
// value is an error naming it.
func TestPolicyText(t *testing.T) {
	for _, p := range []Policy{RoundRobin, LeastConn, Random, ClientIP} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatalf("%v.MarshalText: %v", p, err)
		}
		var q Policy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("UnmarshalText(%q): got %v, %v; want %v", b, q, err, p)
		}
		if p.String() != string(b) {
			t.Errorf("String: got %q; want %q", p.String(), b)
		}
	}
	want := map[Policy]string{RoundRobin: "round-robin", LeastConn: "least-conn", Random: "random", ClientIP: "client-ip"}
	for p, name := range want {
		if p.String() != name {
			t.Errorf("%d.String: got %q; want %q", p, p.String(), name)
		}
	}
	q := LeastConn
	if err := q.UnmarshalText([]byte("weighted")); err == nil || !strings.Contains(err.Error(), `"weighted"`) {
		t.Errorf(`UnmarshalText("weighted"): got %v; want an error naming the input`, err)
	}
	if q != LeastConn {
		t.Errorf("a failed UnmarshalText changed the policy to %v", q)
	}
	if _, err := Policy(9).MarshalText(); err == nil {
		t.Error("Policy(9).MarshalText: got nil error")
	}
	if s := Policy(9).String(); s != "Policy(9)" {
		t.Errorf("Policy(9).String: got %q", s)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateUp: "up", StateEjected: "ejected", StateDown: "down", StateDraining: "draining", State(9): "unknown"} {
		if s.String() != want {
			t.Errorf("State(%d).String: got %q; want %q", s, s.String(), want)
		}
	}
}

// TestCloseTwice: Close is safe twice; Get and Update after it fail with
// ErrClosed.
func TestCloseTwice(t *testing.T) {
	up := startServer(t, echo)
	set := newSet(t, Config{Servers: []Server{{Addr: up.Addr()}}})
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: got %v; want ErrClosed", err)
	}
	if err := set.Update(context.Background(), []Server{{Addr: up.Addr()}}, RoundRobin); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: got %v; want ErrClosed", err)
	}
}
