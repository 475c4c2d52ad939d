package splice

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests here make the race of issue #14 deterministic. One side
// sends its last message and goes away while the other side is still
// sending to it; the copy toward the side that left fails. The last
// message must still be delivered. To hold it back until that failure,
// it sits behind a bulk that the receiving end does not read yet, so the
// direction that carries it is blocked delivering; the session's test
// hook (writesEnded) says when the failed write has been handled, and
// only then does the receiving end read. Linux only: the sender waits for its send queue
// to empty (SIOCOUTQ) before it resets, so that the reset does not
// discard the message in its own kernel.

// lastKind is a kind of conn the tests run over, made from TCP pairs
// whose buffers they size: the spliced path, TLS, and the fallback copy.
type lastKind struct {
	name      string
	wrap      func(t *testing.T, end, join net.Conn) (net.Conn, net.Conn)
	parkAfter time.Duration // the session's park period; zero: the default
}

var lastKinds = []lastKind{
	{"tcp", func(t *testing.T, end, join net.Conn) (net.Conn, net.Conn) { return end, join }, 0},
	// Parking between the steps of the race, as the old second CI pass
	// (every idle copy parking after 200µs) made every test do.
	{"tcp-park-200µs", func(t *testing.T, end, join net.Conn) (net.Conn, net.Conn) { return end, join }, 200 * time.Microsecond},
	{"tls", func(t *testing.T, end, join net.Conn) (net.Conn, net.Conn) { return tlsOver(t, end, join) }, 0},
	{"tcp-hidden", func(t *testing.T, end, join net.Conn) (net.Conn, net.Conn) { return end, hideConn{join} }, 0},
}

const (
	lastRounds = 16
	// lastBulk is what precedes the last message: far more than the
	// receiving end's small buffers hold, far less than the relay's
	// large receive buffer on the sending side.
	lastBulk = 128 << 10
)

// sizedPair returns a connected TCP pair: end (dialed, with a small
// receive buffer set before the connect, so that its window stays small)
// and join (accepted, with a small send buffer and a large receive
// buffer).
func sizedPair(t *testing.T) (end, join *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // ends the Accept: nothing will dial in
	}
	a := <-accepted
	if err != nil || a == nil {
		if a != nil {
			a.Close()
		}
		t.Fatalf("dial: %v", err)
	}
	end, join = c.(*net.TCPConn), a.(*net.TCPConn)
	t.Cleanup(func() {
		end.Close()
		join.Close()
	})
	if err := join.SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := join.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	return end, join
}

// lastSession is a Join over sized pairs; clientRaw and upstreamRaw are
// the TCP conns under the test's ends, joinClientRaw the one under
// joinClient.
type lastSession struct {
	*testSession
	clientRaw, upstreamRaw, joinClientRaw *net.TCPConn
}

func startLast(t *testing.T, k lastKind, opt Options, ended writesEnded) *lastSession {
	t.Helper()
	tune := func(s *session) {
		ended.tune(s)
		s.parkAfter = k.parkAfter
	}
	s := &lastSession{testSession: &testSession{done: make(chan Result, 1), tune: tune}}
	s.clientRaw, s.joinClientRaw = sizedPair(t)
	s.clientEnd, s.joinClient = k.wrap(t, s.clientRaw, s.joinClientRaw)
	var joinRaw net.Conn
	s.upstreamRaw, joinRaw = sizedPair(t)
	s.upstreamEnd, s.joinUpstream = k.wrap(t, s.upstreamRaw, joinRaw)
	s.bound(30 * time.Second)
	s.start(t, context.Background(), opt)
	return s
}

// writesEnded receives the sides toward which a write failed, once its
// direction has ended.
type writesEnded chan Side

// tune makes a session report on w.
func (w writesEnded) tune(s *session) {
	s.testHook = func(at hookPoint, to Side) {
		if at != hookWriteEnded {
			return
		}
		select {
		case w <- to:
		default:
		}
	}
}

// waitWriteEnded waits until a write toward side failed and was handled.
func waitWriteEnded(t *testing.T, ch <-chan Side, side Side) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-ch:
			if got == side {
				return
			}
		case <-timeout:
			t.Fatalf("no write toward the %v failed", side)
		}
	}
}

// drainSides empties ch of reports from an earlier round.
func drainSides(ch <-chan Side) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// waitSent waits until c's kernel has nothing left to send: its peer's
// kernel holds every byte (and the FIN) c wrote.
func waitSent(t *testing.T, c *net.TCPConn) {
	t.Helper()
	waitSocket(t, c, func(fd int) (string, error) {
		n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if n == 0 {
			return "", err
		}
		return fmt.Sprintf("%d bytes still unsent", n), err
	})
}

// waitReset waits until the reset that c's peer sent has reached c: its
// state is CLOSE, and a write to it fails.
func waitReset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	waitSocket(t, c, func(fd int) (string, error) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil || info.State == unix.BPF_TCP_CLOSE {
			return "", err
		}
		return fmt.Sprintf("TCP state %d; want CLOSE", info.State), nil
	})
}

// waitSocket polls c's socket with check until it reports nothing
// pending (""), for at most 20 s; then, or on check's error, the test
// fails.
func waitSocket(t *testing.T, c *net.TCPConn, check func(fd int) (pending string, err error)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending string
		var cerr error
		if err := rc.Control(func(fd uintptr) { pending, cerr = check(int(fd)) }); err != nil || cerr != nil {
			t.Fatalf("polling the socket: %v %v", err, cerr)
		}
		if pending == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(pending)
		}
		time.Sleep(time.Millisecond)
	}
}

// closeAfterJoin waits for Join's result on a goroutine of its own, then
// passes a FIN on to c, as the listener's lingering close does (a plain
// Close with unread input would send a reset and lose what c has not
// sent yet), and closes c only if that fails or is of no use.
func closeAfterJoin(t *testing.T, s *lastSession, c net.Conn) <-chan Result {
	ch := make(chan Result, 1)
	go func() {
		r := s.wait(t)
		cut := r.Up.WriteCut // toward the upstream
		if c == s.joinClient {
			cut = r.Down.WriteCut
		}
		if cut {
			// A write toward c was cut: the message cannot arrive
			// whole, and c may be left mid-message (mid-record, for
			// TLS, so that a close_notify would never be read): close
			// it outright.
			c.Close()
		} else if err := c.(closeWriter).CloseWrite(); err != nil {
			c.Close()
		}
		ch <- r
	}()
	return ch
}

// TestLastReplyArrives: an upstream that answers and goes away (a FIN
// and then a reset, or a reset alone) while the client still floods it:
// its answer reaches the client, every round, spliced, over TLS and
// through the fallback copy, with and without Reuse.
//
// This used to break, in every round: the client -> upstream direction's
// failed write stopped the session, which cut the reply direction while
// it was delivering, with the answer still on the upstream socket.
func TestLastReplyArrives(t *testing.T) {
	ended := make(writesEnded, 64)
	reply := "-ERR Protocol error: last reply\r\n"
	msg := strings.Repeat("b", lastBulk) + reply
	for _, k := range lastKinds {
		for _, rst := range []bool{false, true} {
			for _, reuse := range []bool{false, true} {
				how := "fin"
				if rst {
					how = "rst"
				}
				t.Run(fmt.Sprintf("%s/%s/reuse=%v", k.name, how, reuse), func(t *testing.T) {
					var c roundCount
					for range lastRounds {
						c.add(lastReplyRound(t, k, rst, reuse, ended, msg))
					}
					c.check(t, "reply")
				})
			}
		}
	}
}

// roundCount counts the rounds in which the last message arrived, and
// those whose Result was not as wanted (with the first such complaint).
type roundCount struct {
	rounds, arrived, bad int
	first                string
}

func (c *roundCount) add(arrived bool, bad string) {
	c.rounds++
	if arrived {
		c.arrived++
	}
	if bad != "" {
		if c.bad == 0 {
			c.first = bad
		}
		c.bad++
	}
}

func (c *roundCount) check(t *testing.T, what string) {
	t.Helper()
	if c.arrived != c.rounds {
		t.Errorf("the last %s arrived in %d of %d rounds; want all", what, c.arrived, c.rounds)
	}
	if c.bad != 0 {
		t.Errorf("in %d of %d rounds: %s", c.bad, c.rounds, c.first)
	}
}

func lastReplyRound(t *testing.T, k lastKind, rst, reuse bool, ended writesEnded, msg string) (arrived bool, bad string) {
	drainSides(ended)
	s := startLast(t, k, Options{Reuse: reuse}, ended)
	f := startFlood(s.clientEnd)
	defer func() {
		s.clientRaw.Close()
		<-f.done
	}()

	write(t, s.upstreamEnd, msg)
	if !rst {
		s.upstreamEnd.(closeWriter).CloseWrite()
	}
	waitSent(t, s.upstreamRaw)
	if rst {
		s.upstreamRaw.SetLinger(0)
	}
	s.upstreamRaw.Close() // the flood is unread: a reset either way
	waitWriteEnded(t, ended, Upstream)

	res := closeAfterJoin(t, s, s.joinClient)
	got, _ := readAll(s.clientEnd)
	r := <-res
	switch {
	case r.Up.End != EndError || r.Err == nil || r.UpstreamClean():
		bad = fmt.Sprintf("up %v, Err %v, clean %v; want error, the failed write, false", r.Up.End, r.Err, r.UpstreamClean())
	// After a reset the reply direction reads the error, or, when the
	// failed write already took it from the socket, an EOF.
	case (r.Down.End != EndEOF && r.Down.End != EndError) || r.Down.Stranded != 0:
		bad = fmt.Sprintf("down %v, %d stranded; want eof or error, 0", r.Down.End, r.Down.Stranded)
	}
	return got == msg, bad
}

// TestLastRequestArrives is TestLastReplyArrives the other way round: a
// client sends its last request and resets while the upstream still
// sends to it. The request reaches the upstream (which is not reusable
// any more).
//
// This used to break, in every round: the failed write toward the client
// stopped the session, which cut the request's delivery.
func TestLastRequestArrives(t *testing.T) {
	ended := make(writesEnded, 64)
	msg := strings.Repeat("r", lastBulk) + "LAST REQUEST\r\n"
	for _, k := range lastKinds {
		for _, reuse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reuse=%v", k.name, reuse), func(t *testing.T) {
				var c roundCount
				for range lastRounds {
					c.add(lastRequestRound(t, k, reuse, ended, msg))
				}
				c.check(t, "request")
			})
		}
	}
}

func lastRequestRound(t *testing.T, k lastKind, reuse bool, ended writesEnded, msg string) (arrived bool, bad string) {
	drainSides(ended)
	s := startLast(t, k, Options{Reuse: reuse}, ended)
	write(t, s.clientEnd, msg)
	waitSent(t, s.clientRaw)
	s.clientRaw.SetLinger(0)
	s.clientRaw.Close()
	waitReset(t, s.joinClientRaw)
	// A reply byte makes the copy toward the client write, and fail.
	write(t, s.upstreamEnd, "x")
	waitWriteEnded(t, ended, Client)

	res := closeAfterJoin(t, s, s.joinUpstream)
	var got bytes.Buffer
	got.ReadFrom(s.upstreamEnd)
	r := <-res
	switch {
	case r.Down.End != EndError || r.Err == nil || r.UpstreamClean():
		bad = fmt.Sprintf("down %v, Err %v, clean %v; want error, the failed write, false", r.Down.End, r.Err, r.UpstreamClean())
	case r.Up.Stranded != 0:
		bad = fmt.Sprintf("up: %d stranded; want 0", r.Up.Stranded)
	}
	return got.String() == msg, bad
}
