package splice

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// parkT is TCP with sessions that park after 5ms.
var parkT = tcpT.parking(5 * time.Millisecond)

func parkedCount() int {
	p := &theParker
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// waitParked waits until n directions are parked.
func waitParked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for parkedCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked: %d, want %d", parkedCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitUnparked waits until nothing is parked and the parker has closed
// its epoll instance.
func waitUnparked(t *testing.T) {
	t.Helper()
	waitParked(t, 0)
	p := &theParker
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file != nil {
		t.Error("nothing parked, but the epoll instance is open")
	}
}

// TestParkResumes: an idle copyToClient parks, wakes on data from the
// upstream, parks again, and ends on the upstream's FIN like any other.
func TestParkResumes(t *testing.T) {
	s := startSession(t, parkT, parkT, Options{})
	write(t, s.clientEnd, "ping")
	if got := readN(t, s.upstreamEnd, 4); got != "ping" {
		t.Fatalf("upstream read %q", got)
	}
	write(t, s.upstreamEnd, "pong")
	if got := readN(t, s.clientEnd, 4); got != "pong" {
		t.Fatalf("client read %q", got)
	}
	for round := range 3 {
		waitParked(t, 1)
		msg := fmt.Sprintf("reply-%d", round)
		write(t, s.upstreamEnd, msg) // wakes the parked direction
		if got := readN(t, s.clientEnd, len(msg)); got != msg {
			t.Fatalf("round %d: client read %q", round, got)
		}
		write(t, s.clientEnd, "req") // the other direction never parked
		if got := readN(t, s.upstreamEnd, 3); got != "req" {
			t.Fatalf("round %d: upstream read %q", round, got)
		}
	}
	waitParked(t, 1)
	s.upstreamEnd.(*net.TCPConn).CloseWrite() // FIN wakes it too
	if n, err := s.clientEnd.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after upstream FIN: %d, %v; want EOF", n, err)
	}
	s.clientEnd.(*net.TCPConn).CloseWrite()
	r := s.wait(t)
	if r.Err != nil || r.Down.End != EndEOF || r.Up.End != EndEOF || !r.UpstreamEOF {
		t.Errorf("result: err %v, down %v, up %v, upstream EOF %v; want clean EOFs", r.Err, r.Down.End, r.Up.End, r.UpstreamEOF)
	}
	if want := int64(4 + len("reply-0")*3); r.Down.Written != want {
		t.Errorf("down written %d, want %d", r.Down.Written, want)
	}
	waitUnparked(t)
}

// TestParkStop: a session whose copyToClient is parked still ends at
// once on ctx, on the idle limit, and on a reset from the upstream.
func TestParkStop(t *testing.T) {
	t.Run("ctx", func(t *testing.T) {
		s := startSession(t, parkT, parkT, Options{})
		waitParked(t, 1)
		s.cancel()
		r := s.wait(t)
		if r.FirstEnd != EndCanceled || r.Down.End != EndCanceled || r.Err != nil {
			t.Errorf("first end %v, down end %v, err %v; want canceled", r.FirstEnd, r.Down.End, r.Err)
		}
		waitUnparked(t)
	})
	t.Run("idle", func(t *testing.T) {
		// An idle limit far above parkAfter: the session parks first even
		// on a slow machine.
		s := startSession(t, parkT, parkT, Options{IdleTimeout: time.Second})
		waitParked(t, 1)
		r := s.wait(t)
		if r.FirstEnd != EndIdle || r.Down.End != EndIdle {
			t.Errorf("first end %v, down end %v; want idle", r.FirstEnd, r.Down.End)
		}
		waitUnparked(t)
	})
	t.Run("reset", func(t *testing.T) {
		s := startSession(t, parkT, parkT, Options{})
		waitParked(t, 1)
		s.upstreamEnd.(*net.TCPConn).SetLinger(0)
		s.upstreamEnd.Close()
		r := s.wait(t)
		if r.Err == nil || r.Down.End != EndError {
			t.Errorf("err %v, down end %v; want a read error", r.Err, r.Down.End)
		}
		if r.UpstreamClean() {
			t.Error("a reset upstream reported clean")
		}
		waitUnparked(t)
	})
}

// TestParkDrain: with Reuse, the client's FIN while copyToClient is
// parked resumes it, the reply is relayed, and the session drains.
func TestParkDrain(t *testing.T) {
	s := startSession(t, parkT, parkT, Options{Reuse: true, DrainTimeout: 20 * time.Millisecond})
	waitParked(t, 1)
	write(t, s.clientEnd, "GET")
	if got := readN(t, s.upstreamEnd, 3); got != "GET" {
		t.Fatalf("upstream read %q", got)
	}
	s.clientEnd.(*net.TCPConn).CloseWrite()
	write(t, s.upstreamEnd, "reply")
	if got := readN(t, s.clientEnd, 5); got != "reply" {
		t.Fatalf("client read %q", got)
	}
	r := s.wait(t)
	if r.Down.End != EndDrained || r.Err != nil || r.UpstreamHalfClosed {
		t.Errorf("down end %v, err %v, upstream half-closed %v; want drained", r.Down.End, r.Err, r.UpstreamHalfClosed)
	}
	if !r.UpstreamClean() {
		t.Error("a drained upstream reported unclean")
	}
	waitUnparked(t)
}

// TestParkMany: many idle sessions park one goroutine each (plus the
// parker's), and every one wakes for its own reply.
func TestParkMany(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	sessions := make([]*testSession, n)
	for i := range sessions {
		sessions[i] = startSession(t, parkT, parkT, Options{})
	}
	waitParked(t, n)
	// Each session: the test's goroutine calling Join; copyToClient parked.
	// Timer callbacks that asked the directions to park may still be
	// returning: wait for the count to settle rather than read it once.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine()-before > n+1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got, want := runtime.NumGoroutine()-before, n+1; got > want {
		t.Errorf("%d goroutines for %d parked sessions, want at most %d", got, n, want)
	}
	for i, s := range sessions {
		write(t, s.upstreamEnd, fmt.Sprintf("%04d", i))
	}
	for i, s := range sessions {
		if got, want := readN(t, s.clientEnd, 4), fmt.Sprintf("%04d", i); got != want {
			t.Fatalf("session %d read %q, want %q", i, got, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range sessions {
		s.cancel()
	}
	for _, s := range sessions {
		s.wait(t)
	}
	if ctx.Err() != nil {
		t.Fatal("sessions did not end")
	}
	waitUnparked(t)
}

// TestNoParkWhileDelivering: a copyToClient blocked delivering to a client
// that reads nothing is busy, not idle: checkPark does not ask it to park,
// however long it has moved nothing. (It used to: the direction then
// parked at its next read and was woken at once by the data waiting.)
//
// The session's own park timer is off (a park period of an hour); the
// test runs checkPark itself with a period of 1ns while the upstream
// floods and the client reads nothing. A check counts only if the
// direction was delivering one chunk throughout it: delivering set, and
// no byte moved (act unchanged), before and after, with no park request
// before. Once the client's buffers are full that holds for good.
func TestNoParkWhileDelivering(t *testing.T) {
	clientEnd, clientJoin := tcpPair(t)
	upstreamEnd, upstreamJoin := tcpPair(t)
	s := newSession(clientJoin, upstreamJoin, Options{})
	if !s.down.res.Spliced {
		t.Skip("not spliced")
	}
	s.parkAfter = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx)
		var r Result
		s.finish(&r)
	}()
	f := startFlood(upstreamEnd)
	defer func() {
		upstreamEnd.SetWriteDeadline(aLongTimeAgo) // stop the flood
		<-f.done
		cancel()
		<-done
		clientEnd.Close()
	}()

	clientEnd.SetReadDeadline(time.Now().Add(time.Minute))
	d := &s.down
	buf := make([]byte, 64<<10)
	checked := 0
	for deadline := time.Now().Add(30 * time.Second); checked < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("caught copyToClient delivering throughout a check %d times in 30s; want 3", checked)
		}
		act, delivering := d.act.Load(), d.delivering.Load()
		s.mu.Lock()
		s.parkAfter = time.Nanosecond
		asked := d.parkReq || d.parked
		s.mu.Unlock()
		s.checkPark()
		s.mu.Lock()
		s.parkAfter = time.Hour
		req := d.parkReq
		s.mu.Unlock()
		if asked {
			// A check that caught the direction between chunks asked
			// it to park, but it may be blocked delivering again before
			// its next read: let the client take some bytes, so that
			// it reads, parks and is woken at once.
			if _, err := clientEnd.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		if !delivering || asked || !d.delivering.Load() || d.act.Load() != act {
			continue // not blocked delivering throughout: no verdict
		}
		if req {
			t.Fatal("checkPark asked copyToClient to park while it was delivering")
		}
		checked++
	}
}
