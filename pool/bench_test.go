package pool

import (
	"context"
	"io"
	"net"
	"testing"
)

// BenchmarkGetRelease is the warm path: Get and Release of an idle used
// conn under parallel load, with ReuseIfClean and no quiet period. Each
// iteration peeks twice (hand-out and release) and clears deadlines twice.
func BenchmarkGetRelease(b *testing.B) {
	up := startUpstream(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	p := newPool(b, Config{Addr: up.Addr(), MaxIdle: DefaultMaxIdle, Reuse: ReuseIfClean, QuietPeriod: -1})
	ctx := context.Background()
	// Warm up: enough idle conns for every goroutine.
	var warm []Lease
	for range 8 {
		warm = append(warm, mustGet(b, p))
	}
	for _, l := range warm {
		if out := l.Release(clean); out != KeptUsed {
			b.Fatalf("warm-up Release: got %v; want kept-used", out)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Get(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			if out := l.Release(clean); out != KeptUsed {
				b.Errorf("Release: got %v; want kept-used", out)
				return
			}
		}
	})
	b.StopTimer()
	if st := p.Stats(); st.Dials != 8 {
		b.Errorf("got %d dials; want the 8 of the warm-up", st.Dials)
	}
}
