//go:build !unix

package balance

import "testing"

// blackhole needs listen(2) on a bound socket to shrink its backlog.
func blackhole(tb testing.TB) string {
	tb.Skip("a listener whose accept queue is full needs a unix listen(2)")
	return ""
}
