package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startTestUpstreams(t *testing.T) *Upstreams {
	t.Helper()
	u, err := StartUpstreams(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// startTestIOCopy runs the io.Copy proxy in front of upstream and returns
// its address.
func startTestIOCopy(t *testing.T, upstream, caFile string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ioCopyProxy{upstream: upstream}
	if caFile != "" {
		d, err := newDialer("", caFile, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		p.tls = d.tls
	}
	done := make(chan error, 1)
	go func() { done <- p.serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("iocopy serve: got %v; want nil", err)
		}
	})
	return ln.Addr().String()
}

// short makes a mode run for a fraction of a second.
func short(c loadConfig) loadConfig {
	c.Warmup = 50 * time.Millisecond
	c.Duration = 200 * time.Millisecond
	c.Settle = 20 * time.Millisecond
	c.SessionTimeout = 2 * time.Second
	return c
}

// TestLoadModes runs every load mode briefly, directly against the
// upstreams and through the io.Copy proxy (measured as this process), and
// checks that each result is clean and carries its figures.
func TestLoadModes(t *testing.T) {
	u := startTestUpstreams(t)
	modes := []struct {
		name   string
		cfg    loadConfig
		want   []string // metrics every target reports
		viaPID []string // metrics only with a proxy PID
	}{
		{"throughput c2u", loadConfig{Mode: "throughput", Dir: "c2u", Conns: 2}, []string{"gbps"}, []string{"cpu_s_per_gb"}},
		{"throughput u2c", loadConfig{Mode: "throughput", Dir: "u2c", Conns: 2}, []string{"gbps"}, []string{"cpu_s_per_gb"}},
		{"rr", loadConfig{Mode: "rr", Conns: 4}, []string{"req_per_s", "p50_us", "p99_us", "p999_us"}, []string{"cpu_us_per_req"}},
		{"churn", loadConfig{Mode: "churn", Conns: 4}, []string{"sessions_per_s", "p50_us", "p99_us", "accepts_per_session"}, []string{"cpu_ms_per_1000"}},
		{"churn tls", loadConfig{Mode: "churn", Conns: 4, Server: kindTLSEcho}, []string{"sessions_per_s", "accepts_per_session", "tls_resumed_share"}, []string{"cpu_ms_per_1000"}},
		{"idle", loadConfig{Mode: "idle", Conns: 100}, []string{"sessions"}, []string{"rss_kib_per_session", "fds_per_session"}},
	}
	for _, target := range []string{"direct", "iocopy"} {
		for _, m := range modes {
			t.Run(target+"/"+m.name, func(t *testing.T) {
				cfg := short(m.cfg)
				cfg.Control = u.ControlAddr()
				cfg.Target = target
				want := m.want
				tlsUp := cfg.Server == kindTLSEcho
				if target == "direct" {
					if tlsUp {
						cfg.ClientTLS = u.CAFile()
					}
				} else {
					up, ca := u.Addr(kindEcho), ""
					switch {
					case tlsUp:
						up, ca = u.Addr(kindTLSEcho), u.CAFile()
					case cfg.Mode == "throughput" && cfg.Dir == "c2u":
						up = u.Addr(kindSink)
					case cfg.Mode == "throughput":
						up = u.Addr(kindSource)
					}
					cfg.Addr = startTestIOCopy(t, up, ca)
					cfg.PID = os.Getpid()
					want = append(want, m.viaPID...)
					if cfg.Mode == "idle" {
						// The "proxy" is this process, which the earlier
						// subtests left with freed heap: return it to the OS
						// now, or the scavenger may return it between the
						// baseline and the reading, and RSS per session
						// comes out negative.
						debug.FreeOSMemory()
					}
				}
				r, err := Load(context.Background(), cfg)
				if err != nil {
					t.Fatalf("Load: got %v; want nil", err)
				}
				if r.Errors != 0 {
					t.Fatalf("errors: got %d (%q); want 0", r.Errors, r.ErrorSamples)
				}
				for _, k := range want {
					if v, ok := r.Metrics[k]; !ok || v <= 0 {
						t.Errorf("metric %s: got %v (present %v); want > 0 in %v", k, v, ok, r.Metrics)
					}
				}
				if cfg.Mode == "churn" {
					// Neither target pools: one upstream accept per session.
					if a := r.Metrics["accepts_per_session"]; a < 0.8 || a > 1.2 {
						t.Errorf("accepts_per_session: got %v; want about 1", a)
					}
				}
				if cfg.Mode == "idle" && r.Metrics["sessions"] != 100 {
					t.Errorf("sessions held: got %v; want 100", r.Metrics["sessions"])
				}
			})
		}
	}
}

// TestLoadCatchesFaults points modes at the wrong server: the checks must
// count errors rather than report a figure as if all were well.
func TestLoadCatchesFaults(t *testing.T) {
	u := startTestUpstreams(t)
	tests := []struct {
		name string
		cfg  loadConfig
	}{
		// The source's stream is not the echo of a request.
		{"rr replies differ", loadConfig{Mode: "rr", Server: kindEcho, Addr: u.Addr(kindSource)}},
		// Bytes written to the echo server never reach the sink.
		{"c2u bytes lost", loadConfig{Mode: "throughput", Dir: "c2u", Server: kindSink, Addr: u.Addr(kindEcho)}},
		// The sink never answers: each session times out.
		{"churn no reply", loadConfig{Mode: "churn", Conns: 2, Server: kindEcho, Addr: u.Addr(kindSink)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := short(tt.cfg)
			cfg.Control = u.ControlAddr()
			cfg.SessionTimeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			r, err := Load(ctx, cfg)
			if err != nil {
				t.Fatalf("Load: got %v; want nil", err)
			}
			if r.Errors == 0 {
				t.Errorf("errors: got 0; want > 0 (metrics %v)", r.Metrics)
			}
		})
	}
}

// dialEcho starts the test upstreams and dials the echo server, with a
// 5 s deadline; the conn is closed when the test ends.
func dialEcho(t *testing.T) (*Upstreams, net.Conn) {
	t.Helper()
	u := startTestUpstreams(t)
	c, err := net.Dial("tcp", u.Addr(kindEcho))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return u, c
}

func TestEchoFence(t *testing.T) {
	u, c := dialEcho(t)
	for _, tt := range []struct{ send, want string }{
		{"PING\r\n", "+PONG\r\n"},
		{"hello", "hello"},
		{"PING\r\n", "+PONG\r\n"},
	} {
		if _, err := io.WriteString(c, tt.send); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(tt.want))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("reply to %q: got %q; want %q", tt.send, got, tt.want)
		}
	}
	if f := u.Stats().Servers[kindEcho].Fences; f != 2 {
		t.Errorf("fences: got %d; want 2", f)
	}
}

// TestEchoRedisReset sends the echo server pool.RedisReset's write (and
// near misses, which are echoed) on one conn.
func TestEchoRedisReset(t *testing.T) {
	u, c := dialEcho(t)
	tok := strings.Repeat("0123456789abcdef", 2)
	reset := "ECHO " + tok + "1\r\nRESET\r\nECHO " + tok + "2\r\n"
	want := "$33\r\n" + tok + "1\r\n+RESET\r\n$33\r\n" + tok + "2\r\n"
	for _, tt := range []struct{ send, want string }{
		{reset, want},
		{"ECHO a\r\nRESET\r\nECHO bc\r\n", "$1\r\na\r\n+RESET\r\n$2\r\nbc\r\n"},
		{"ECHO a\r\nRESET\r\nECHO b\r\nx", "ECHO a\r\nRESET\r\nECHO b\r\nx"},   // more after it
		{"ECHO a b\r\nRESET\r\nECHO c\r\n", "ECHO a b\r\nRESET\r\nECHO c\r\n"}, // two arguments
		{"ECHO \r\nRESET\r\nECHO cd\r\n", "ECHO \r\nRESET\r\nECHO cd\r\n"},     // empty argument
		{"ECHO a\r\nPING\r\nECHO b\r\n", "ECHO a\r\nPING\r\nECHO b\r\n"},       // not RESET
		{"PING\r\n", "+PONG\r\n"},
		{reset, want},
	} {
		if _, err := io.WriteString(c, tt.send); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(tt.want))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reply to %q: %v", tt.send, err)
		}
		if string(got) != tt.want {
			t.Errorf("reply to %q: got %q; want %q", tt.send, got, tt.want)
		}
	}
	// pool.RedisReset itself, on the same conn: it passes only when the
	// reply is the one Redis would give.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 2 {
		if err := pool.RedisReset().Func(ctx, c); err != nil {
			t.Fatalf("pool.RedisReset: %v", err)
		}
	}
	st := u.Stats().Servers[kindEcho]
	if st.RedisResets != 5 || st.Fences != 1 || st.Resets != 0 {
		t.Errorf("redis resets, fences, resets: got %d, %d, %d; want 5, 1, 0", st.RedisResets, st.Fences, st.Resets)
	}
}

func TestReport(t *testing.T) {
	var in bytes.Buffer
	for rep, v := range []float64{1, 3, 2} {
		for target, scale := range map[string]float64{"direct": 4, "relay-never": 1, "haproxy": 2, "nginx": 1.5} {
			r := Result{Target: target, Rep: rep + 1, Test: "rr-32", Metrics: map[string]float64{
				"req_per_s": 1000 * v * scale, "cpu_us_per_req": 10 * v * scale,
			}}
			if target == "nginx" && rep == 0 {
				r.Errors, r.ErrorSamples = 1, []string{"echo mismatch"}
			}
			line, _ := json.Marshal(r)
			in.Write(append(line, '\n'))
		}
	}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(path, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"report", "-in", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		// Medians: relay 2000 req/s; best peer HAProxy 4000; ratio 0.50.
		"| rr 64 B, 32 conns: req/s | 8000 | 2000 | — | 4000 | 3000 ⚠ | — | — | 4000 HAProxy | 0.50 | — |",
		// Lower is better: best peer nginx 30 µs; relay 20, ratio 0.67.
		"| rr 64 B, 32 conns: proxy CPU-µs/req | 80.0 | 20.0 | — | 40.0 | 30.0 ⚠ | — | — | 30.0 nginx | 0.67 | — |",
		"nginx rr-32 rep 1: 1 errors, e.g. `echo mismatch`",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report: missing %q in:\n%s", want, out.String())
		}
	}
}

func TestCompare(t *testing.T) {
	var in bytes.Buffer
	add := func(r Result) {
		line, _ := json.Marshal(r)
		in.Write(append(line, '\n'))
	}
	cpu := map[string][]float64{"base": {200, 210, 190, 220}, "new": {190, 215, 180, 200}}
	rate := map[string][]float64{"base": {3000, 3100, 2900, 3200}, "new": {3100, 3000, 3000, 3300}}
	for rep := range 4 {
		for _, target := range []string{"base", "new"} {
			r := Result{Target: target, Rep: rep + 1, Test: "churn", Metrics: map[string]float64{
				"cpu_ms_per_1000": cpu[target][rep], "sessions_per_s": rate[target][rep],
			}}
			if target == "new" && rep == 3 {
				r.Errors = 2
			}
			add(r)
			// A conns count run.sh never uses: bench/ab.sh --mode rr --conns 8.
			add(Result{Target: target, Rep: rep + 1, Test: "rr-8", Metrics: map[string]float64{
				"cpu_us_per_req": cpu[target][rep] / 10,
			}})
		}
	}
	path := filepath.Join(t.TempDir(), "ab.jsonl")
	if err := os.WriteFile(path, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"compare", "-in", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		// Lower is better: new is lower in reps 1, 3 and 4.
		"| churn: proxy CPU-ms/1000 sessions | 205 | 195 | 0.951 | 3 of 4 pairs |",
		// Higher is better: new is higher in reps 1, 3 and 4; equal medians.
		"| churn: sessions/s | 3050 | 3050 | 1.00 | 3 of 4 pairs |",
		"| rr-8: proxy CPU-µs/req | 20.5 | 19.5 | 0.951 | 3 of 4 pairs |",
		"new: 1 result(s) of churn counted errors",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("compare: missing %q in:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"compare", "-in", path, "-b", "other"}, io.Discard, io.Discard); err == nil {
		t.Error("compare with a label that has no results: got nil error")
	}
}

func TestFmtNum(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{0.421, "0.421"},
		// This used to print "1", hiding that it is not exactly one.
		{0.99964, "1.00"},
		{1, "1.00"},
		{12.34, "12.3"},
		{46142.7, "46143"},
		{math.NaN(), "—"},
	} {
		if got := fmtNum(tt.in); got != tt.want {
			t.Errorf("fmtNum(%v): got %q; want %q", tt.in, got, tt.want)
		}
	}
}
