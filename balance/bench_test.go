package balance

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/relaykit/relay/internal/loopback"
	"github.com/relaykit/relay/pool"
)

// BenchmarkGet takes a reused connection and gives it back, through a Set
// of n servers under each policy: the warm path a session takes. The
// "pool" case is the same through one pool.Pool alone, the baseline.
func BenchmarkGet(b *testing.B) {
	b.Run("pool", func(b *testing.B) {
		addr := startSink(b)
		p, err := pool.New(pool.Config{Addr: addr, Reuse: pool.ReuseIfClean, MaxIdle: 16, QuietPeriod: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		ctx := context.Background()
		clean := pool.Verdict{Used: true, Clean: true}
		b.ReportAllocs()
		for b.Loop() {
			l, err := p.Get(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l.Release(clean)
		}
	})
	for _, n := range []int{1, 3} {
		for _, pol := range []Policy{RoundRobin, LeastConn, Random, ClientIP} {
			if n == 1 && pol != RoundRobin {
				continue // one server takes no policy
			}
			b.Run(fmt.Sprintf("servers=%d/%s", n, pol), func(b *testing.B) {
				var servers []Server
				for range n {
					servers = append(servers, Server{Addr: startSink(b)})
				}
				set, err := New(Config{Servers: servers, Policy: pol, Pool: pool.Config{
					Reuse: pool.ReuseIfClean, MaxIdle: 16, QuietPeriod: -1,
				}})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { set.Close() })
				client := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 5000}
				ctx := context.Background()
				clean := pool.Verdict{Used: true, Clean: true}
				b.ReportAllocs()
				for b.Loop() {
					l, err := set.GetFor(ctx, client)
					if err != nil {
						b.Fatal(err)
					}
					l.Release(clean)
				}
			})
		}
	}
}

// startSink starts a loopback server that reads and discards, and
// returns its address.
func startSink(b *testing.B) string {
	return loopback.Start(b, func(c net.Conn) { io.Copy(io.Discard, c) }).Addr()
}
