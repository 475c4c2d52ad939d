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

// summaryFigures are the rows of the short table for the repository's
// README: the core figures of each test group.
func summaryFigures() []figure {
	want := []struct{ test, metric, label string }{
		{"tput-c2u-16", "cpu_s_per_gb", "throughput, 16 streams c→u: CPU-s/GB"},
		{"tput-c2u-16", "gbps", "throughput, 16 streams c→u: GB/s (higher is better)"},
		{"tput-u2c-16", "cpu_s_per_gb", "throughput, 16 streams u→c: CPU-s/GB"},
		{"tput-u2c-16", "gbps", "throughput, 16 streams u→c: GB/s (higher is better)"},
		{"rr-32", "cpu_us_per_req", "rr 64 B, 32 conns: CPU-µs/request"},
		{"churn", "cpu_ms_per_1000", "churn: CPU-ms per 1000 sessions"},
		{"churn", "accepts_per_session", "churn: upstream accepts per session"},
		{"churn-tls", "sessions_per_s", "churn to a TLS upstream: sessions/s (higher is better)"},
		{"churn-tls", "p50_us", "churn to a TLS upstream: p50 µs"},
		{"idle", "fds_per_session", "idle: fds per session"},
		{"idle", "rss_kib_per_session", "idle: RSS KiB per session"},
	}
	all := figures()
	var fs []figure
	for _, w := range want {
		i := slices.IndexFunc(all, func(f figure) bool { return f.test == w.test && f.metric == w.metric })
		if i < 0 {
			panic("summaryFigures: no figure " + w.test + " " + w.metric)
		}
		f := all[i]
		f.label = w.label
		fs = append(fs, f)
	}
	return fs
}

// summaryTargets are the columns of the summary table (those with results).
var summaryTargets = []string{"relay-never", "relay-verified", "haproxy", "nginx", "iocopy"}

// relaysAndPeers splits the report's targets into relay builds and peers.
func (rp *report) relaysAndPeers() (relays, peers []string) {
	for _, t := range rp.targets {
		switch {
		case slices.Contains(relayTargets, t):
			relays = append(relays, t)
		case slices.Contains(peerTargets, t):
			peers = append(peers, t)
		}
	}
	return relays, peers
}

// best returns the best median of f among peers (all the peers of this
// run, whether or not they have a column), and which peer it is.
func (rp *report) best(f figure, peers []string) (float64, string) {
	best, name := math.NaN(), ""
	if f.better == 0 {
		return best, name
	}
	for _, p := range peers {
		v := rp.median(f.test, f.metric, p)
		if math.IsNaN(v) {
			continue
		}
		if math.IsNaN(best) || float64(f.better)*(v-best) > 0 {
			best, name = v, p
		}
	}
	return best, name
}

// writeTable writes the full markdown table: one row per figure, one
// column per target, then the best peer and each relay's ratio to it.
func (rp *report) writeTable(w io.Writer) {
	relays, _ := rp.relaysAndPeers()
	rp.writeRows(w, figures(), rp.targets, relays, false)
}

// writeSummary writes the short table of summaryFigures, with the
// columns of summaryTargets and the ratios of the relays that have
// results; the best peer is still chosen among every peer of the run.
func (rp *report) writeSummary(w io.Writer) {
	var cols, relays []string
	for _, t := range summaryTargets {
		if slices.Contains(rp.targets, t) && rp.hasResults(t) {
			cols = append(cols, t)
		}
	}
	all, _ := rp.relaysAndPeers()
	for _, t := range all {
		if rp.hasResults(t) {
			relays = append(relays, t)
		}
	}
	rp.writeRows(w, summaryFigures(), cols, relays, true)
}

// hasResults reports whether target has any result.
func (rp *report) hasResults(target string) bool {
	for _, metrics := range rp.values {
		for _, byTarget := range metrics {
			if len(byTarget[target]) > 0 {
				return true
			}
		}
	}
	return false
}

// evenBand is how far from 1 a ratio to the best peer may be and still
// count as even in the summary: less than this machine's noise between
// runs (±15% for throughput and per-request CPU).
const evenBand = 0.05

// writeRows writes a table of figs with a column per target of cols,
// the best peer, and the ratio to it of each of relays; with verdict, each ratio
// says whether relay is ahead of the best peer, behind it, or even
// (within evenBand).
func (rp *report) writeRows(w io.Writer, figs []figure, cols, relays []string, verdict bool) {
	_, peers := rp.relaysAndPeers()
	head := []string{"figure"}
	for _, t := range cols {
		head = append(head, orElse(targetTitles[t], t))
	}
	head = append(head, "best peer")
	for _, t := range relays {
		head = append(head, orElse(targetTitles[t], t)+" ÷ best")
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	for _, f := range figs {
		if rp.values[f.test][f.metric] == nil {
			continue
		}
		row := []string{f.label}
		for _, t := range cols {
			cell := fmtNum(rp.median(f.test, f.metric, t))
			if len(rp.errs[f.test][t]) > 0 {
				cell += " ⚠"
			}
			row = append(row, cell)
		}
		best, bestName := rp.best(f, peers)
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
				cell := fmt.Sprintf("%.2f", v/best)
				if verdict {
					switch r := v / best; {
					case math.Abs(r-1) <= evenBand:
						cell += " even"
					case float64(f.better)*(r-1) > 0:
						cell += " ahead"
					default:
						cell += " behind"
					}
				}
				row = append(row, cell)
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

// layoutRun is the results of one layout (see bench/run.sh --layouts).
type layoutRun struct {
	name, path, about string
	rp                *report
}

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var runs []*layoutRun
	fs.Func("in", "JSON lines from bench load (required): FILE, or LAYOUT=FILE, repeated for each layout (a table each)", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok {
			name, path = "", v
		}
		if path == "" || (ok && name == "") {
			return fmt.Errorf("want FILE or LAYOUT=FILE, got %q", v)
		}
		for _, r := range runs {
			if r.name == name {
				return fmt.Errorf("layout %q given twice", name)
			}
		}
		runs = append(runs, &layoutRun{name: name, path: path})
		return nil
	})
	about := map[string]string{}
	fs.Func("layout", "LAYOUT=TEXT: what the layout is, for its headings (repeated)", func(v string) error {
		name, text, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return fmt.Errorf("want LAYOUT=TEXT, got %q", v)
		}
		about[name] = text
		return nil
	})
	out := fs.String("out", "", "markdown output (default: stdout)")
	title := fs.String("title", "relay benchmark", "heading of the report")
	facts := fs.String("facts", "", "markdown file with the machine facts, included as is")
	notes := fs.String("notes", "", "markdown file with notes (skipped targets and so on), included as is")
	targets := fs.String("targets", "direct,relay-never,relay-verified,haproxy,nginx,socat,iocopy", "column order")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if len(runs) == 0 {
		return fmt.Errorf("-in: required")
	}
	if len(runs) > 1 && slices.ContainsFunc(runs, func(r *layoutRun) bool { return r.name == "" }) {
		return fmt.Errorf("-in: with more than one file, name each one's layout: LAYOUT=FILE")
	}
	reps := 1
	for _, r := range runs {
		rp, err := readResultsFile(r.path, strings.Split(*targets, ","))
		if err != nil {
			return err
		}
		r.rp, r.about = rp, about[r.name]
		reps = max(reps, rp.reps)
	}
	// heading names a layout's section: "Layout pinned: proxy on CPU 1".
	heading := func(r *layoutRun, what string) string {
		h := "Layout " + r.name
		if r.about != "" {
			h += ": " + r.about
		}
		if what != "" {
			h += " — " + what
		}
		return h
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", *title)
	fmt.Fprintf(&b, "Each figure is the median of %d run(s). \"÷ best\" is relay's figure divided by the best peer's "+
		"(HAProxy, nginx, socat, io.Copy) in the same run and layout: for GB/s, req/s and sessions/s higher is better, for every other figure lower is. "+
		"CPU, RSS and fds are the proxy's whole process tree, from /proc; direct has no proxy, so none.\n\n", reps)
	b.WriteString("## Summary\n\n")
	b.WriteString("The core figures, with each relay's ratio to the best peer of the same run and layout " +
		"(\"ahead\" of that peer or \"behind\" it by more than 5%, \"even\" within 5%). " +
		"The best peer is chosen among every peer measured, including any without a column here.\n\n")
	for _, r := range runs {
		if r.name != "" {
			fmt.Fprintf(&b, "### %s\n\n", heading(r, ""))
		}
		r.rp.writeSummary(&b)
		b.WriteString("\n")
	}
	for _, r := range runs {
		if r.name == "" {
			b.WriteString("## All figures\n\n")
		} else {
			fmt.Fprintf(&b, "## %s\n\n", heading(r, "all figures"))
		}
		r.rp.writeTable(&b)
		b.WriteString("\n")
		r.rp.writeErrors(&b)
		b.WriteString("\n")
	}
	for _, part := range []struct{ heading, path string }{{"Notes", *notes}, {"Machine", *facts}} {
		if part.path == "" {
			continue
		}
		text, err := os.ReadFile(part.path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", part.path, err)
		}
		if len(strings.TrimSpace(string(text))) > 0 {
			fmt.Fprintf(&b, "## %s\n\n%s\n\n", part.heading, strings.TrimRight(string(text), "\n"))
		}
	}
	text := strings.TrimRight(b.String(), "\n") + "\n"
	if *out == "" {
		_, err := io.WriteString(stdout, text)
		return err
	}
	return os.WriteFile(*out, []byte(text), 0o644)
}
