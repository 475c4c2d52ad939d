package listener

import (
	"net"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// lingerPolicies are the pools the lingering close is tested with: no
// reuse, and verified reuse (a fence).
var lingerPolicies = []struct {
	name string
	cfg  func(addr string) pool.Config
}{
	{"never", func(addr string) pool.Config { return pool.Config{Addr: addr, Spares: 1} }},
	{"verified", func(addr string) pool.Config {
		return pool.Config{Addr: addr, Spares: 1, MaxIdle: pool.DefaultMaxIdle, Reuse: pool.ReuseIfVerified,
			Reset: pool.Fence([]byte("PING\r\n"), []byte("+PONG\r\n"))}
	}},
}

// answerAndClose is an upstream that answers at once and closes without
// reading: with a client still sending, its kernel resets the conn.
func answerAndClose(reply string) func(c net.Conn) {
	return func(c net.Conn) { c.Write([]byte(reply)) }
}

// clientFlood writes to c until a write fails; done yields the error.
func clientFlood(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// sessionEnds returns a Config whose OnSessionEnd reports on the channel.
func sessionEnds() (Config, <-chan SessionInfo) {
	ch := make(chan SessionInfo, 64)
	return Config{OnSessionEnd: func(i SessionInfo) { ch <- i }}, ch
}

func waitEnded(t *testing.T, ch <-chan SessionInfo) SessionInfo {
	t.Helper()
	select {
	case i := <-ch:
		return i
	case <-time.After(20 * time.Second):
		t.Fatal("the session did not end")
		return SessionInfo{}
	}
}

// TestLingerBounded: a client that keeps sending after its upstream
// answered and closed, and never reads nor closes, is still closed: the
// lingering close that keeps its last reply from being reset away is
// bounded (by LingerTimeout), and the session's goroutine ends. An
// unbounded linger (no read deadline) fails it.
func TestLingerBounded(t *testing.T) {
	for _, pol := range lingerPolicies {
		t.Run(pol.name, func(t *testing.T) {
			up := startServer(t, answerAndClose("-ERR bye\r\n"))
			cfg, ended := sessionEnds()
			l := startProxy(t, pol.cfg(up.Addr()), cfg)
			c := dial(t, l.Addr().String())
			flood := clientFlood(c)
			if info := waitEnded(t, ended); info.Result.Err == nil {
				t.Errorf("session Err nil; want the upstream's failure")
			}
			select {
			case <-flood:
			case <-time.After(20 * time.Second):
				t.Fatal("the flooding client was never closed")
			}
			deadline := time.Now().Add(20 * time.Second)
			for l.Stats().Active != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("sessions still live: %v", l.Sessions())
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestLingerCutByClose: Close does not wait for a lingering close; it
// cuts it, and the client is closed.
func TestLingerCutByClose(t *testing.T) {
	up := startServer(t, answerAndClose("-ERR bye\r\n"))
	cfg, ended := sessionEnds()
	l := startProxy(t, pool.Config{Addr: up.Addr(), Spares: 1}, cfg, func(l *ProxyListener) { l.linger = time.Hour })
	c := dial(t, l.Addr().String())
	flood := clientFlood(c)
	waitEnded(t, ended)
	if s := l.Sessions(); len(s) != 1 || s[0].Phase != PhaseLinger {
		t.Errorf("sessions %v; want one, lingering", s)
	}
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for the lingering close")
	}
	select {
	case <-flood:
	case <-time.After(20 * time.Second):
		t.Fatal("the flooding client was never closed")
	}
}
