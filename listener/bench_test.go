package listener

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/relaykit/relay/balance"
	"github.com/relaykit/relay/pool"
)

// fenceEcho echoes, answering a read of exactly "PING\r\n" with
// "+PONG\r\n" (a Redis-like fence, as the bench upstream does).
func fenceEcho(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			out := buf[:n]
			if string(out) == "PING\r\n" {
				out = []byte("+PONG\r\n")
			}
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// BenchmarkSession is one full session through the ProxyListener:
// connect, one 64-byte exchange, close, with the reuse policies the
// bundled proxy's bench uses. allocs/op counts the whole process (client,
// proxy and upstream), so compare it between versions, not with zero.
func BenchmarkSession(b *testing.B) {
	for _, tc := range []struct {
		name string
		pcfg pool.Config
		cfg  Config
		set  bool // through a balance.Set of one server, as the bundled proxy
	}{
		{"never", pool.Config{Spares: 16}, Config{}, false},
		{"never/set", pool.Config{Spares: 16}, Config{}, true},
		{"verified", pool.Config{Spares: 4, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified,
			Reset: pool.Fence([]byte("PING\r\n"), []byte("+PONG\r\n"))}, Config{DrainTimeout: time.Millisecond}, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := startServer(b, fenceEcho)
			var l *ProxyListener
			if tc.set {
				set, err := balance.New(balance.Config{Servers: []balance.Server{{Addr: up.Addr()}}, Pool: tc.pcfg})
				if err != nil {
					b.Fatal(err)
				}
				l = startSetProxy(b, set, tc.cfg)
			} else {
				tc.pcfg.Addr = up.Addr()
				l = startProxy(b, tc.pcfg, tc.cfg)
			}
			addr := l.Addr().String()
			req := make([]byte, 64)
			fill(req, 1)
			resp := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
