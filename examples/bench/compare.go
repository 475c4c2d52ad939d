package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// runCompare compares two builds measured in alternating pairs (see
// bench/ab.sh): for each figure, both medians, their ratio, and in how
// many pairs (results with the same rep) the second build did better.
// The count is the steadier signal on a noisy machine: a median can move
// with one outlier, a 6-of-6 count rarely does by chance.
func runCompare(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON lines from bench load (required)")
	a := fs.String("a", "base", "target label of the first build")
	b := fs.String("b", "new", "target label of the second build")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *in == "" {
		return fmt.Errorf("-in: required")
	}
	rp, err := readResultsFile(*in, []string{*a, *b})
	if err != nil {
		return err
	}
	return writeComparison(stdout, rp, *a, *b)
}

// writeComparison writes the markdown table of runCompare: a row for
// each test in the results (any -conns: rr-8 as well as rr-32) and each
// of its metrics that has a better direction.
func writeComparison(w io.Writer, rp *report, a, b string) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| figure | %s | %s | %s ÷ %s | %s better in |\n|---|---|---|---|---|\n", a, b, b, a, b)
	rows := 0
	tests := slices.Sorted(maps.Keys(rp.values))
	for _, test := range tests {
		for _, m := range comparedMetrics() {
			byTarget := rp.values[test][m.metric]
			va, vb := byTarget[a], byTarget[b]
			if len(va) == 0 || len(vb) == 0 {
				continue
			}
			ma, mb := median(va), median(vb)
			wins, pairs := pairWins(rp.pairs(test, m.metric, a, b), m.better)
			fmt.Fprintf(&sb, "| %s: %s | %s | %s | %s | %d of %d pairs |\n",
				test, m.unit, fmtNum(ma), fmtNum(mb), fmtNum(mb/ma), wins, pairs)
			rows++
		}
	}
	if rows == 0 {
		return fmt.Errorf("no figure has results for both %q and %q", a, b)
	}
	for _, t := range []string{a, b} {
		for _, test := range tests {
			if n := len(rp.errs[test][t]); n > 0 {
				fmt.Fprintf(&sb, "\n%s: %d result(s) of %s counted errors", t, n, test)
			}
		}
	}
	sb.WriteString("\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// comparedMetric is a metric that has a better direction, with the unit
// the report's rows give it.
type comparedMetric struct {
	metric, unit string
	better       int
}

// comparedMetrics lists, in the report's order, each metric of figures()
// that has a better direction, once.
func comparedMetrics() []comparedMetric {
	var ms []comparedMetric
	for _, f := range figures() {
		if f.better == 0 || slices.ContainsFunc(ms, func(m comparedMetric) bool { return m.metric == f.metric }) {
			continue
		}
		_, unit, _ := strings.Cut(f.label, ": ")
		ms = append(ms, comparedMetric{f.metric, unit, f.better})
	}
	return ms
}

// pairs returns the (a, b) values of metric that share a rep, in rep order.
func (rp *report) pairs(test, metric, a, b string) [][2]float64 {
	va, vb := rp.byRep[test][metric][a], rp.byRep[test][metric][b]
	var out [][2]float64
	for rep := 1; rep <= rp.reps; rep++ {
		x, okA := va[rep]
		y, okB := vb[rep]
		if okA && okB {
			out = append(out, [2]float64{x, y})
		}
	}
	return out
}

// pairWins counts the pairs in which the second value is better: higher
// when better is +1, lower when it is -1.
func pairWins(pairs [][2]float64, better int) (wins, n int) {
	for _, p := range pairs {
		if float64(better)*(p[1]-p[0]) > 0 {
			wins++
		}
	}
	return wins, len(pairs)
}
