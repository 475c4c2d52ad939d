package splice

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"
	"golang.org/x/sys/unix"
)

// wrapConn is a transparent wrapper that says so with NetConn.
type wrapConn struct{ net.Conn }

func (w wrapConn) NetConn() net.Conn { return w.Conn }

// tlsLike embeds a conn and has a Handshake method, as a type embedding
// *tls.Conn would: its NetConn carries ciphertext.
type tlsLike struct{ wrapConn }

func (tlsLike) Handshake() error { return nil }

// TestSpliced checks which pairs of conns Join splices.
func TestSpliced(t *testing.T) {
	wrapped := transport{"wrapped", true, true, func(t testing.TB) (net.Conn, net.Conn) {
		end, join := tcpPair(t)
		return end, wrapConn{wrapConn{join}}
	}, 0}
	fake := transport{"tls-like", false, true, func(t testing.TB) (net.Conn, net.Conn) {
		end, join := tcpPair(t)
		return end, tlsLike{wrapConn{join}}
	}, 0}
	tests := []struct {
		client, upstream transport
		want             bool
	}{
		{tcpT, tcpT, true},
		{unixT, unixT, true},
		{tcpT, unixT, true},
		{wrapped, tcpT, true},
		{tlsT, tlsT, false},
		{tcpT, tlsT, false},
		{pipeT, pipeT, false},
		{tcpT, pipeT, false},
		{hiddenT, tcpT, false},
		{fake, tcpT, false},
	}
	for _, tt := range tests {
		t.Run(tt.client.name+"-"+tt.upstream.name, func(t *testing.T) {
			s := startSession(t, tt.client, tt.upstream, Options{})
			exchange(t, s, "request", "reply")
			s.cancel()
			r := s.wait(t)
			if r.Up.Spliced != tt.want || r.Down.Spliced != tt.want {
				t.Errorf("Spliced %v/%v; want %v", r.Up.Spliced, r.Down.Spliced, tt.want)
			}
			checkUsable(t, s)
		})
	}
}

// TestStreamSocket: only stream sockets are spliced; datagram and
// seqpacket unix sockets are *net.UnixConn too.
func TestStreamSocket(t *testing.T) {
	for _, tt := range []struct {
		network string
		want    bool
	}{{"unix", true}, {"unixpacket", false}, {"unixgram", false}} {
		t.Run(tt.network, func(t *testing.T) {
			if !nettest.TestableNetwork(tt.network) {
				t.Skip("not testable")
			}
			var c net.Conn
			if tt.network == "unixgram" {
				pc, err := nettest.NewLocalPacketListener(tt.network)
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				c = pc.(*net.UnixConn)
			} else {
				_, join := listenPair(t, tt.network)
				c = join
			}
			if _, _, got := streamSocket(c); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

// fdCount counts this process's open fds, and those that are pipes.
func fdCount(t *testing.T) (all, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

// settleFDs waits until ok holds for the fd counts, running the GC so that
// the pipe pool drops its pipes and their cleanups close them. Pooled
// pipes are closed only that way (or beyond maxIdlePipes, at once); under
// the race detector sync.Pool also drops a quarter of all Puts.
func settleFDs(t *testing.T, ok func(all, pipes int) bool) (all, pipes int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, pipes = fdCount(t)
		if ok(all, pipes) || time.Now().After(deadline) {
			return all, pipes
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFDBaseline runs many sessions that end in every way, and checks that
// no pipe stays busy after a Join and the fd count returns to its
// baseline.
func TestFDBaseline(t *testing.T) {
	base, _ := fdCount(t)
	ends := []func(t *testing.T, s *testSession){
		func(t *testing.T, s *testSession) { // request, reply, cancel
			exchange(t, s, "request", "reply")
			s.cancel()
		},
		func(t *testing.T, s *testSession) { // half-close both ways
			exchange(t, s, "request", "reply")
			s.clientEnd.(closeWriter).CloseWrite()
			s.upstreamEnd.(closeWriter).CloseWrite()
		},
		func(t *testing.T, s *testSession) { // write cut: bytes stranded in a pipe
			f := startFlood(s.upstreamEnd)
			f.waitStalled(t)
			s.cancel()
			s.wait(t)
			s.upstreamEnd.Close()
			<-f.done
		},
	}
	for i := range 150 {
		tr := tcpT
		if i%2 == 1 && nettest.TestableNetwork("unix") {
			tr = unixT
		}
		end := ends[i%len(ends)]
		if i%len(ends) == 2 && i > 10 {
			end = ends[0] // a few floods are enough, they are slow
		}
		t.Run("", func(t *testing.T) {
			s := startSession(t, tr, tr, Options{})
			end(t, s)
			r := s.wait(t)
			if !r.Up.Spliced {
				t.Fatalf("not spliced")
			}
			if n := pipesBusy.Load(); n != 0 {
				t.Fatalf("%d pipes busy after Join; want 0", n)
			}
		})
	}
	all, _ := settleFDs(t, func(all, _ int) bool { return all <= base })
	if all > base {
		t.Errorf("%d fds open after the sessions; want at most the %d before", all, base)
	}
}

// TestIdleSessionsHoldNoPipe: an idle session holds its sockets and
// nothing else. (Go's io.Copy holds two pipes, four fds, per idle
// session.)
func TestIdleSessionsHoldNoPipe(t *testing.T) {
	const n = 100
	sessions := make([]*testSession, n)
	for i := range sessions {
		sessions[i] = &testSession{done: make(chan Result, 1)}
		sessions[i].clientEnd, sessions[i].joinClient = tcpPair(t)
		sessions[i].upstreamEnd, sessions[i].joinUpstream = tcpPair(t)
	}
	_, pipes0 := settleFDs(t, func(int, int) bool { return true })
	for _, s := range sessions {
		s.start(t, context.Background(), Options{})
		exchange(t, s, "request", "reply") // moves bytes, takes pipes
	}
	// Every session is idle now, blocked reading both ways.
	_, pipes := settleFDs(t, func(_, pipes int) bool { return pipesBusy.Load() == 0 && pipes <= pipes0+8 })
	if busy := pipesBusy.Load(); busy != 0 {
		t.Errorf("%d pipes busy in %d idle sessions; want 0", busy, n)
	}
	if pipes > pipes0+8 {
		t.Errorf("%d pipe fds with %d idle sessions; want at most %d", pipes, n, pipes0+8)
	}
	for _, s := range sessions {
		s.cancel()
		if r := s.wait(t); !r.Up.Spliced || r.Up.Written != 7 || r.Down.Written != 5 {
			t.Errorf("spliced %v, written %d/%d; want true, 7/5", r.Up.Spliced, r.Up.Written, r.Down.Written)
		}
	}
}

// TestStrandedPipeNotPooled: a pipe that still holds bytes must be closed,
// not pooled, or the next session would receive another one's bytes.
func TestStrandedPipeNotPooled(t *testing.T) {
	p, err := getPipe()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(p.r, &st); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(p.w, []byte("old")); err != nil {
		t.Fatal(err)
	}
	p.n = 3
	putPipe(p)
	var after unix.Stat_t
	if err := unix.Fstat(p.r, &after); err == nil && after.Ino == st.Ino {
		t.Errorf("pipe with stranded bytes still open after putPipe; want it closed")
	}
	for range 100 {
		q, err := getPipe()
		if err != nil {
			t.Fatal(err)
		}
		if q == p {
			t.Fatalf("got the stranded pipe back from the pool")
		}
		defer putPipe(q)
	}
}

// TestBlockingSocketStops: a socket whose O_NONBLOCK was cleared behind
// its conn's back (File().Fd() does that to the socket it shares) still
// stops at once, after small messages and after a bulk transfer: the
// copy's reads and writes never wait in the kernel, where no deadline
// could reach them.
func TestBlockingSocketStops(t *testing.T) {
	s := &testSession{done: make(chan Result, 1)}
	s.clientEnd, s.joinClient = tcpPair(t)
	s.upstreamEnd, s.joinUpstream = tcpPair(t)
	s.bound(2 * time.Minute)
	for _, c := range []net.Conn{s.joinClient, s.joinUpstream} {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			t.Fatal(err)
		}
		f.Fd() // makes the shared socket blocking
		f.Close()
	}
	s.start(t, context.Background(), Options{})
	exchange(t, s, "request", "reply")
	// A bulk transfer, which would turn a direction to the pipe.
	bulk := strings.Repeat("b", 1<<20)
	werr := goWrite(s.clientEnd, bulk)
	if got := readN(t, s.upstreamEnd, len(bulk)); got != bulk {
		t.Fatal("upstream got other bytes than the bulk sent")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	exchange(t, s, "request", "reply")
	s.cancel()
	r := s.wait(t)
	if !r.Up.Spliced || r.FirstEnd != EndCanceled {
		t.Errorf("Spliced %v, FirstEnd %v; want true, canceled", r.Up.Spliced, r.FirstEnd)
	}
}

// fileConn is a conn of a kind the package does not know, on a socket of
// its own: only its SyscallConn is used.
type fileConn struct {
	net.Conn
	f *os.File
}

func (c fileConn) SyscallConn() (syscall.RawConn, error) { return c.f.SyscallConn() }

// TestStreamSocketBlocking: a conn of another kind is spliced only if its
// socket is non-blocking, which Go's poller can wait for.
func TestStreamSocketBlocking(t *testing.T) {
	for _, nonblock := range []bool{false, true} {
		t.Run(fmt.Sprint("nonblock=", nonblock), func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[1])
			if err := unix.SetNonblock(fds[0], nonblock); err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fds[0]), "socketpair")
			defer f.Close()
			if _, _, got := streamSocket(fileConn{f: f}); got != nonblock {
				t.Errorf("got %v; want %v", got, nonblock)
			}
		})
	}
}
