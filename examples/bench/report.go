package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// figure is one row of the report: a metric of a test.
type figure struct {
	test, metric, label string
	// better is +1 when higher is better, -1 when lower is, 0 when the
	// figure only informs (no best peer, no ratio).
	better int
}

// figures lists the rows in order.
func figures() []figure {
	var fs []figure
	for _, t := range []struct{ test, name string }{
		{"tput-c2u-1", "throughput client→upstream, 1 stream"},
		{"tput-c2u-16", "throughput client→upstream, 16 streams"},
		{"tput-u2c-1", "throughput upstream→client, 1 stream"},
		{"tput-u2c-16", "throughput upstream→client, 16 streams"},
	} {
		fs = append(fs,
			figure{t.test, "gbps", t.name + ": GB/s", +1},
			figure{t.test, "cpu_s_per_gb", t.name + ": proxy CPU-s/GB", -1})
	}
	for _, t := range []struct{ test, name string }{
		{"rr-1", "rr 64 B, 1 conn"},
		{"rr-32", "rr 64 B, 32 conns"},
	} {
		fs = append(fs,
			figure{t.test, "req_per_s", t.name + ": req/s", +1},
			figure{t.test, "p50_us", t.name + ": p50 µs", -1},
			figure{t.test, "p99_us", t.name + ": p99 µs", -1},
			figure{t.test, "p999_us", t.name + ": p99.9 µs", -1},
			figure{t.test, "cpu_us_per_req", t.name + ": proxy CPU-µs/req", -1})
	}
	for _, t := range []struct{ test, name string }{
		{"churn", "churn, 16 workers"},
		{"churn-tls", "churn to TLS upstream"},
	} {
		fs = append(fs,
			figure{t.test, "sessions_per_s", t.name + ": sessions/s", +1},
			figure{t.test, "p50_us", t.name + ": p50 µs", -1},
			figure{t.test, "p99_us", t.name + ": p99 µs", -1},
			figure{t.test, "cpu_ms_per_1000", t.name + ": proxy CPU-ms/1000 sessions", -1},
			figure{t.test, "accepts_per_session", t.name + ": upstream accepts/session", -1})
	}
	fs = append(fs,
		figure{"churn-tls", "tls_resumed_share", "churn to TLS upstream: share of handshakes resumed", 0},
		figure{"churn-tls", "tls_mlkem_share", "churn to TLS upstream: share of handshakes with ML-KEM", 0},
		figure{"idle", "rss_kib_per_session", "idle sessions: proxy RSS KiB/session", -1},
		figure{"idle", "pss_kib_per_session", "idle sessions: proxy PSS KiB/session", -1},
		figure{"idle", "fds_per_session", "idle sessions: proxy fds/session", -1},
		figure{"idle", "sessions", "idle sessions: held", 0})
	return fs
}

// Target names as the script uses them, with their column headings.
var (
	relayTargets = []string{"relay-never", "relay-verified"}
	peerTargets  = []string{"haproxy", "nginx", "socat", "iocopy"}
	targetTitles = map[string]string{
		"direct": "direct", "relay-never": "relay never", "relay-verified": "relay verified",
		"haproxy": "HAProxy", "nginx": "nginx", "socat": "socat", "iocopy": "io.Copy",
	}
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// fmtNum prints about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "—"
	case v == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		if s := fmt.Sprintf("%.3g", v); s != "1" && s != "-1" {
			return s
		}
		return fmt.Sprintf("%.2f", v) // 0.9996 is "1.00", not "1"
	}
}

// report holds the parsed results.
type report struct {
	targets []string
	// values[test][metric][target] are the per-rep values.
	values map[string]map[string]map[string][]float64
	// byRep[test][metric][target][rep] is the same value by its rep.
	byRep map[string]map[string]map[string]map[int]float64
	// errs[test][target] are the results that counted errors.
	errs map[string]map[string][]Result
	reps int
}

func readResults(r io.Reader, targets []string) (*report, error) {
	rep := &report{
		targets: slices.Clone(targets),
		values:  map[string]map[string]map[string][]float64{},
		byRep:   map[string]map[string]map[string]map[int]float64{},
		errs:    map[string]map[string][]Result{},
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(text), &res); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if !slices.Contains(rep.targets, res.Target) {
			rep.targets = append(rep.targets, res.Target)
		}
		rep.reps = max(rep.reps, res.Rep)
		for m, v := range res.Metrics {
			if rep.values[res.Test] == nil {
				rep.values[res.Test] = map[string]map[string][]float64{}
			}
			if rep.values[res.Test][m] == nil {
				rep.values[res.Test][m] = map[string][]float64{}
			}
			rep.values[res.Test][m][res.Target] = append(rep.values[res.Test][m][res.Target], v)
			setByRep(rep.byRep, res, m, v)
		}
		if res.Errors > 0 {
			if rep.errs[res.Test] == nil {
				rep.errs[res.Test] = map[string][]Result{}
			}
			rep.errs[res.Test][res.Target] = append(rep.errs[res.Test][res.Target], res)
		}
	}
	return rep, sc.Err()
}

// readResultsFile is readResults of the file at path.
func readResultsFile(path string, targets []string) (*report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rp, err := readResults(f, targets)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return rp, nil
}

func setByRep(byRep map[string]map[string]map[string]map[int]float64, res Result, metric string, v float64) {
	if byRep[res.Test] == nil {
		byRep[res.Test] = map[string]map[string]map[int]float64{}
	}
	if byRep[res.Test][metric] == nil {
		byRep[res.Test][metric] = map[string]map[int]float64{}
	}
	if byRep[res.Test][metric][res.Target] == nil {
		byRep[res.Test][metric][res.Target] = map[int]float64{}
	}
	byRep[res.Test][metric][res.Target][res.Rep] = v
}

func (rp *report) median(test, metric, target string) float64 {
	return median(rp.values[test][metric][target])
}

// writeTable writes the markdown table: one row per figure, one column per
// target, then the best peer and each relay's ratio to it.
func (rp *report) writeTable(w io.Writer) {
	var relays, peers []string
	for _, t := range rp.targets {
		switch {
		case slices.Contains(relayTargets, t):
			relays = append(relays, t)
		case slices.Contains(peerTargets, t):
			peers = append(peers, t)
		}
	}
	head := []string{"figure"}
	for _, t := range rp.targets {
		head = append(head, orElse(targetTitles[t], t))
	}
	head = append(head, "best peer")
	for _, t := range relays {
		head = append(head, orElse(targetTitles[t], t)+" ÷ best")
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	for _, f := range figures() {
		if rp.values[f.test][f.metric] == nil {
			continue
		}
		row := []string{f.label}
		for _, t := range rp.targets {
			cell := fmtNum(rp.median(f.test, f.metric, t))
			if len(rp.errs[f.test][t]) > 0 {
				cell += " ⚠"
			}
			row = append(row, cell)
		}
		best, bestName := math.NaN(), ""
		if f.better != 0 {
			for _, p := range peers {
				v := rp.median(f.test, f.metric, p)
				if math.IsNaN(v) {
					continue
				}
				if math.IsNaN(best) || float64(f.better)*(v-best) > 0 {
					best, bestName = v, p
				}
			}
		}
		if math.IsNaN(best) {
			row = append(row, "—")
		} else {
			row = append(row, fmtNum(best)+" "+orElse(targetTitles[bestName], bestName))
		}
		for _, t := range relays {
			v := rp.median(f.test, f.metric, t)
			switch {
			case math.IsNaN(v) || math.IsNaN(best):
				row = append(row, "—")
			case best == 0:
				row = append(row, fmt.Sprintf("%s vs 0", fmtNum(v)))
			default:
				row = append(row, fmt.Sprintf("%.2f", v/best))
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// writeErrors lists every result that counted errors, with samples.
func (rp *report) writeErrors(w io.Writer) {
	tests := make([]string, 0, len(rp.errs))
	for t := range rp.errs {
		tests = append(tests, t)
	}
	sort.Strings(tests)
	if len(tests) == 0 {
		fmt.Fprintln(w, "No errors: every byte count and echo checked out.")
		return
	}
	fmt.Fprintln(w, "Results marked ⚠ counted errors (the figure is still the median of all runs):")
	fmt.Fprintln(w)
	for _, test := range tests {
		for _, target := range rp.targets {
			for _, r := range rp.errs[test][target] {
				fmt.Fprintf(w, "- %s %s rep %d: %d errors", target, test, r.Rep, r.Errors)
				if len(r.ErrorSamples) > 0 {
					fmt.Fprintf(w, ", e.g. `%s`", strings.Join(r.ErrorSamples, "`; `"))
				}
				fmt.Fprintln(w)
			}
		}
	}
}

func orElse(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON lines from bench load (required)")
	out := fs.String("out", "", "markdown output (default: stdout)")
	title := fs.String("title", "relay benchmark", "heading of the report")
	facts := fs.String("facts", "", "markdown file with the machine facts, included as is")
	notes := fs.String("notes", "", "markdown file with notes (skipped targets and so on), included as is")
	targets := fs.String("targets", "direct,relay-never,relay-verified,haproxy,nginx,socat,iocopy", "column order")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *in == "" {
		return fmt.Errorf("-in: required")
	}
	rp, err := readResultsFile(*in, strings.Split(*targets, ","))
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", *title)
	fmt.Fprintf(&b, "Each figure is the median of %d run(s). \"÷ best\" is relay's figure divided by the best peer's "+
		"(HAProxy, nginx, socat, io.Copy): for GB/s, req/s and sessions/s higher is better, for every other figure lower is. "+
		"CPU, RSS and fds are the proxy's whole process tree, from /proc; direct has no proxy, so none.\n\n", max(rp.reps, 1))
	rp.writeTable(&b)
	b.WriteString("\n")
	rp.writeErrors(&b)
	for _, part := range []struct{ heading, path string }{{"Notes", *notes}, {"Machine", *facts}} {
		if part.path == "" {
			continue
		}
		text, err := os.ReadFile(part.path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", part.path, err)
		}
		if len(strings.TrimSpace(string(text))) > 0 {
			fmt.Fprintf(&b, "\n## %s\n\n%s\n", part.heading, strings.TrimRight(string(text), "\n"))
		}
	}
	if *out == "" {
		_, err := io.WriteString(stdout, b.String())
		return err
	}
	return os.WriteFile(*out, []byte(b.String()), 0o644)
}
