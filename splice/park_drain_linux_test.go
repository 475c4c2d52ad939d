package splice

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestParkDeadlineBeforeDrain: checkPark's past read
// deadline, seen by copyToClient just before the client's FIN starts a
// drain, must not be taken by endRead for the drain limit. At 5423396 it
// is: with a reply owed, reuse is given up at once (the client's FIN is
// passed on to the upstream, UpstreamHalfClosed) although DrainTimeout
// has not passed (3s here, far above the 500ms the test waits for a FIN,
// so that a slow machine does not reach it).
//
// The test holds s.mu to order the goroutines as they can order
// themselves: checkPark's timer fires (parkReq, past read deadline) while
// copyToUpstream is relaying the request and reading the client's FIN;
// copyToUpstream's endEOF then takes s.mu before copyToClient's endRead.
func TestParkDeadlineBeforeDrain(t *testing.T) {
	clientEnd, clientJoin := tcpPair(t)
	upstreamEnd, upstreamJoin := tcpPair(t)
	s := newSession(clientJoin, upstreamJoin, Options{Reuse: true, DrainTimeout: 3 * time.Second})
	if !s.down.res.Spliced {
		t.Skip("not spliced")
	}
	s.parkAfter = time.Hour // no park of the session's own
	done := make(chan Result, 1)
	go func() {
		s.run(context.Background())
		var r Result
		s.finish(&r)
		done <- r
	}()
	time.Sleep(20 * time.Millisecond) // both directions waiting

	s.mu.Lock()
	// The client's request and FIN: copyToUpstream relays the request,
	// reads the FIN and waits for s.mu in endEOF.
	write(t, clientEnd, "GET")
	clientEnd.(*net.TCPConn).CloseWrite()
	got := readN(t, upstreamEnd, 3)
	time.Sleep(50 * time.Millisecond)
	// What checkPark does when its timer fires now (its checks pass:
	// nothing has ended, no drain yet).
	s.down.parkReq = true
	s.uio.SetReadDeadline(aLongTimeAgo)
	time.Sleep(50 * time.Millisecond) // copyToClient waits for s.mu in endRead
	s.mu.Unlock()
	if got != "GET" {
		t.Fatalf("upstream read %q", got)
	}

	// The upstream owes a reply: it must not see the client's FIN
	// before DrainTimeout.
	upstreamEnd.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := upstreamEnd.Read(make([]byte, 1))
	upstreamEnd.SetReadDeadline(time.Time{})
	finEarly := err == io.EOF
	if finEarly {
		t.Error("the upstream got the client's FIN at once, not after DrainTimeout (3s)")
	} else if !isTimeout(err) {
		t.Errorf("upstream read: %d, %v", n, err)
	}
	write(t, upstreamEnd, "reply")
	if got := readN(t, clientEnd, 5); got != "reply" {
		t.Errorf("client read %q", got)
	}
	if finEarly {
		// A plain half-close now: it ends at the upstream's FIN.
		upstreamEnd.(*net.TCPConn).CloseWrite()
	}
	r := <-done // else drained after 3s of quiet
	if r.UpstreamHalfClosed || r.Down.End != EndDrained {
		t.Errorf("result %v: upstream half-closed %v, down end %v; want drained", r, r.UpstreamHalfClosed, r.Down.End)
	}
}
