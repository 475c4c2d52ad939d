package splice

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestParkDeadlineBeforeDrain: checkPark's past read deadline, seen by
// copyToClient just before the client's FIN starts a drain, must not be
// taken by endRead for the drain limit. At 5423396 it is: with a reply
// owed, reuse is given up at once (the client's FIN is passed on to the
// upstream, UpstreamHalfClosed) although DrainTimeout has not passed.
//
// The session's test hook forces the interleaving: the test does what
// checkPark does when its timer fires (parkReq, a past read deadline on
// the upstream); copyToClient's read fails and it waits, before endRead
// takes s.mu, until copyToUpstream's endEOF has handled the client's FIN
// (the drain has begun). The drain limit is a minute, so no stall of a
// busy machine reaches it.
func TestParkDeadlineBeforeDrain(t *testing.T) {
	clientEnd, clientJoin := tcpPair(t)
	upstreamEnd, upstreamJoin := tcpPair(t)
	clientEnd.SetDeadline(time.Now().Add(time.Minute))
	upstreamEnd.SetDeadline(time.Now().Add(time.Minute))
	s := newSession(clientJoin, upstreamJoin, Options{Reuse: true, DrainTimeout: time.Minute})
	if !s.down.res.Spliced {
		t.Skip("not spliced")
	}
	s.parkAfter = time.Hour // no park of the session's own
	readFailed, finHandled := make(chan struct{}), make(chan struct{})
	var onRead, onFIN sync.Once
	s.testHook = func(at hookPoint, side Side) {
		switch {
		case at == hookReadFailed && side == Upstream:
			onRead.Do(func() {
				close(readFailed)
				select {
				case <-finHandled:
				case <-time.After(time.Minute):
				}
			})
		case at == hookEOFHandled && side == Client:
			onFIN.Do(func() { close(finHandled) })
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		s.run(ctx)
		var r Result
		s.finish(&r)
		done <- r
	}()
	waitFor := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never happened", what)
		}
	}

	// The client's request: a reply is owed from now on.
	write(t, clientEnd, "GET")
	if got := readN(t, upstreamEnd, 3); got != "GET" {
		t.Fatalf("upstream read %q", got)
	}
	// What checkPark does when its timer fires now (its checks pass:
	// nothing has ended, no drain yet).
	s.mu.Lock()
	s.down.parkReq = true
	s.uio.SetReadDeadline(aLongTimeAgo)
	s.mu.Unlock()
	waitFor(readFailed, "copyToClient's read failing on the park deadline")
	// The client's FIN, while copyToClient waits to enter endRead.
	clientEnd.(*net.TCPConn).CloseWrite()
	waitFor(finHandled, "endEOF handling the client's FIN")

	write(t, upstreamEnd, "reply")
	if got := readN(t, clientEnd, 5); got != "reply" {
		t.Fatalf("client read %q", got)
	}
	cancel()
	r := <-done
	if r.UpstreamHalfClosed {
		t.Errorf("result %v: the client's FIN was passed on to the upstream before DrainTimeout (a minute)", r)
	}
	if r.Down.End != EndCanceled {
		t.Errorf("down end %v; want canceled (still draining when ctx ended)", r.Down.End)
	}
}
