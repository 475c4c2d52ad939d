package listener

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
	"github.com/relaykit/relay/splice"
)

// sessionLog collects SessionInfos from OnSessionEnd.
type sessionLog struct {
	mu    sync.Mutex
	infos []SessionInfo
}

func (s *sessionLog) add(si SessionInfo) { s.mu.Lock(); s.infos = append(s.infos, si); s.mu.Unlock() }

func (s *sessionLog) wait(tb testing.TB, n int) []SessionInfo {
	tb.Helper()
	waitFor(tb, "sessions to end", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.infos) >= n })
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SessionInfo(nil), s.infos...)
}

// TestCutReplyIsNotReused: a session that the idle limit or Close ends in
// the middle of a reply leaves the rest of the reply on the upstream. That
// upstream must be closed, never handed to the next client. (This used to
// be judged clean, because the last bytes had moved toward the client, and
// the next client read "part2".)
func TestCutReplyIsNotReused(t *testing.T) {
	up := startServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			io.WriteString(c, "part1\n")
			time.Sleep(300 * time.Millisecond)
			if _, err := io.WriteString(c, "part2\n"); err != nil {
				return
			}
		}
	})
	var log sessionLog
	l := startProxy(t, pool.Config{Addr: up.Addr(), MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfClean},
		Config{SessionIdleTimeout: 100 * time.Millisecond, OnSessionEnd: log.add})

	c := dial(t, l.Addr().String())
	if got, err := exchange(c, "req\n"); err != nil || got != "part1\n" {
		t.Fatalf("got %q, %v; want part1", got, err)
	}
	infos := log.wait(t, 1) // ended by the idle limit, part2 still owed
	if infos[0].Result.FirstEnd != splice.EndIdle {
		t.Fatalf("end: got %v; want %v", infos[0].Result.FirstEnd, splice.EndIdle)
	}
	if infos[0].Outcome.Kept() {
		t.Fatalf("outcome of a session cut mid-reply: got %v; want the upstream closed", infos[0].Outcome)
	}
	c2 := dial(t, l.Addr().String())
	c2.Write([]byte("second\n"))
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c2).ReadString('\n')
	if line != "part1\n" {
		t.Fatalf("next client read %q, %v; want its own part1", line, err)
	}
}

// TestHalfClosedUpstreamIsNotASpare: with the default ReuseNever, a client
// that half-closes without sending a byte has its FIN passed on with
// CloseWrite. That upstream can no longer take a request, so it must not
// go back as a fresh spare. (This used to be kept as "untouched", and the
// next client's request failed.)
func TestHalfClosedUpstreamIsNotASpare(t *testing.T) {
	stop := make(chan struct{})
	up := startServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				<-stop // keep our side open after the client's FIN
				return
			}
			io.WriteString(c, line)
		}
	})
	t.Cleanup(func() { close(stop) })
	var log sessionLog
	l := startProxy(t, pool.Config{Addr: up.Addr()},
		Config{SessionIdleTimeout: 100 * time.Millisecond, OnSessionEnd: log.add})

	c := dial(t, l.Addr().String())
	c.(*net.TCPConn).CloseWrite()
	infos := log.wait(t, 1)
	if !infos[0].Result.UpstreamHalfClosed {
		t.Fatalf("UpstreamHalfClosed: got false; want the client's FIN passed on")
	}
	if infos[0].Outcome.Kept() {
		t.Fatalf("outcome of a half-closed upstream: got %v; want it closed", infos[0].Outcome)
	}
	c2 := dial(t, l.Addr().String())
	if got, err := exchange(c2, "next\n"); err != nil || got != "next\n" {
		t.Fatalf("next client: got %q, %v; want the echo", got, err)
	}
}
