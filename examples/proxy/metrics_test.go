package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRunMetrics checks that -metrics serves relay_ metrics read at
// scrape time, the Go and process collectors, and pprof, and that it
// stops with run.
func TestRunMetrics(t *testing.T) {
	noLeaks(t)
	r := startProxy(t, "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-log-level", "debug")
	maddr := r.waitLog(regexp.MustCompile(`msg="metrics listening" addr=(\S+)`))[1]

	for range 2 {
		if _, err := roundTrip(t, r.addr, "hello", nil); err != nil {
			t.Fatalf("session: %v; log:\n%s", err, r.stderr)
		}
	}
	r.waitLogN(regexp.MustCompile(`msg="session ended"`), 2)

	// No keep-alive: an idle client conn would outlive the test.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitFor}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get("http://" + maddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, %v; want 200", path, resp.StatusCode, err)
		}
		return string(body)
	}

	body := get("/metrics")
	for _, want := range []string{
		"relay_sessions_total 2\n",
		"relay_sessions_active 0\n",
		`relay_bytes_total{direction="to_upstream"} 12` + "\n",
		`relay_bytes_total{direction="to_client"}`,
		`relay_session_failures_total{kind="no_upstream"} 0` + "\n",
		`relay_pool_conns{state="idle_fresh"}`,
		"relay_pool_dials_total",
		"relay_pool_dial_errors_total 0\n",
		`relay_pool_handouts_total{source="spare"}`,
		`relay_pool_closes_total{reason="not_clean"}`,
		"relay_pool_wait_seconds_total",
		`relay_server_up{name="`,
		`relay_server_sessions_total{name="`,
		"relay_no_server_total 0\n",
		"go_goroutines",
		"process_",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q; got:\n%s", want, body)
		}
	}
	if body := get("/"); !strings.Contains(body, "<h2>Servers</h2>") {
		t.Errorf("/: got %q; want the status page", body)
	}
	if body := get("/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: got %q; want the profile index", body)
	}

	// The private registry is the only one: nothing leaked into the
	// global default registry.
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "relay_") {
			t.Errorf("default registry has %s; want relay_ metrics only in run's own registry", mf.GetName())
		}
	}

	r.mustStop()
	if _, err := client.Get("http://" + maddr + "/metrics"); err == nil {
		t.Errorf("GET /metrics after stop: got a response; want the server gone")
	}
}
