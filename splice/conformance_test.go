package splice

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestRelayedConn runs nettest's net.Conn conformance tests on a pair of
// conns relayed by Join: the relay must carry data, FINs and closes as a
// direct connection would. (TLS conns fail nettest on their own: a write
// timeout breaks a tls.Conn for good.)
func TestRelayedConn(t *testing.T) {
	trs := []transport{tcpT, hiddenT}
	if canPark {
		trs = append(trs, tcpT.parking(200*time.Microsecond))
	}
	if nettest.TestableNetwork("unix") {
		trs = append(trs, unixT)
	}
	for _, tr := range trs {
		t.Run(tr.name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				clientEnd, joinClient := tr.pair(t)
				upstreamEnd, joinUpstream := tr.pair(t)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan Result, 1)
				go func() { done <- joinTuned(ctx, joinClient, joinUpstream, Options{}, tr.tune()) }()
				return clientEnd, upstreamEnd, func() {
					clientEnd.Close()
					upstreamEnd.Close()
					cancel()
					<-done
				}, nil
			})
		})
	}
}
