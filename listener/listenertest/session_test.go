package listenertest

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/relaykit/relay/listener"
)

// session dials the forwarder and returns the client conn and the
// session it became.
func session(t *testing.T, fw *Forwarder) (net.Conn, *Session) {
	t.Helper()
	n := fw.Counts().Accepted + 1 // before the dial: it may be accepted at once
	c := dial(t, fw.Addr())
	if err := fw.WaitSessions(ctxFor(t, 10*time.Second), n); err != nil {
		t.Fatal(err)
	}
	s := fw.Session(uint64(n))
	if s == nil {
		t.Fatalf("no session %d", n)
	}
	return c, s
}

func TestSessionState(t *testing.T) {
	fw, _ := newEcho(t)
	c, s := session(t, fw)
	if _, err := exchange(c, "hello\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := s.State()
	if st.ID != 1 || st.Phase != listener.PhaseCopy || st.ToUpstream != 6 || st.ToClient != 6 || st.Ended {
		t.Errorf("State() = %+v; want session 1 in phase copy with 6 B each way", st)
	}
	if st.ClientAddr.String() != c.LocalAddr().String() {
		t.Errorf("ClientAddr = %v; want %v", st.ClientAddr, c.LocalAddr())
	}
	if got := fw.Sessions(); len(got) != 1 || got[0] != s {
		t.Errorf("Sessions() = %v; want [session 1]", got)
	}
	c.Close()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after its client closed")
	}
	st = s.State()
	if !st.Ended || st.Info.ID != 1 || st.Info.Result.Up.Written != 6 {
		t.Errorf("State() after the end = %+v; want ended, with the listener's report", st)
	}
	// The faults see the bytes only if splice copies through the client
	// conn's Read and Write: a clientConn that exposed its socket
	// (SyscallConn, NetConn) would be spliced past them.
	if r := st.Info.Result; r.Up.Spliced || r.Down.Spliced {
		t.Errorf("the session was spliced (%+v); want a user-space copy through the faults", r)
	}
	if got := fw.Sessions(); len(got) != 0 {
		t.Errorf("Sessions() after the end = %v; want none", got)
	}
	if c := fw.Counts(); c.Accepted != 1 || c.Ended != 1 || c.Live != 0 {
		t.Errorf("Counts() = %+v; want 1 accepted, 1 ended", c)
	}
}

func TestSessionPauseResume(t *testing.T) {
	for _, dir := range []Direction{Upstream, Downstream, Both} {
		t.Run(dir.String(), func(t *testing.T) {
			fw, _ := newEcho(t)
			c, s := session(t, fw)
			s.Pause(dir)
			if st := s.State(); st.Paused != dir {
				t.Errorf("Paused = %v; want %v", st.Paused, dir)
			}
			got, err := exchange(c, "held\n", 200*time.Millisecond)
			if !isTimeout(err) {
				t.Fatalf("exchange while paused: got %q, %v; want a timeout", got, err)
			}
			// Other sessions are not paused.
			c2, _ := session(t, fw)
			if got, err := exchange(c2, "other\n", 10*time.Second); got != "other\n" {
				t.Fatalf("another session: got %q, %v", got, err)
			}
			s.Resume(dir)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if got+line != "held\n" {
				t.Fatalf("after Resume: got %q, %v; want held", got+line, err)
			}
		})
	}
}

func TestSessionCut(t *testing.T) {
	fw, _ := newEcho(t)
	c, s := session(t, fw)
	if _, err := exchange(c, "hello\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Cut(); err != nil {
		t.Fatalf("Cut: %v", err)
	}
	if _, err := readAll(c, 10*time.Second); err != nil {
		t.Fatalf("after Cut: %v; want EOF", err)
	}
	if err := s.Cut(); err == nil {
		t.Error("second Cut: nil error; want one")
	}
	<-s.Done()
	if st := s.State(); st.Info.Outcome.Kept() {
		t.Errorf("outcome %v; want the upstream closed", st.Info.Outcome)
	}
}

func TestSessionReset(t *testing.T) {
	needLinux(t)
	fw, _ := newEcho(t)
	c, s := session(t, fw)
	if _, err := exchange(c, "hello\n", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if _, err := readAll(c, 10*time.Second); !isReset(err) {
		t.Fatalf("after Reset: %v; want a reset", err)
	}
}

func TestSessionCloseWrite(t *testing.T) {
	t.Run("downstream", func(t *testing.T) {
		srv, recorded := recordingServer(t)
		fw := New(t, srv.Addr())
		c, s := session(t, fw)
		if err := s.CloseWrite(Downstream); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		// The client sees EOF and can still send.
		if b, err := readAll(c, 10*time.Second); len(b) != 0 || err != nil {
			t.Fatalf("client read %q, %v; want EOF", b, err)
		}
		io.WriteString(c, "still here")
		c.(*net.TCPConn).CloseWrite()
		if b := recorded(); string(b) != "still here" {
			t.Errorf("upstream got %q; want still here", b)
		}
	})
	t.Run("upstream", func(t *testing.T) {
		srv := startServer(t, func(c net.Conn) {
			b, _ := readAll(c, 10*time.Second)
			// The reply flows after the FIN.
			io.WriteString(c, "got "+string(b))
		})
		fw := New(t, srv.Addr())
		c, s := session(t, fw)
		io.WriteString(c, "req")
		// Wait for the bytes to pass, then end the client's stream there.
		if err := waitUntil(func() bool { return s.State().ToUpstream == 3 }); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseWrite(Upstream); err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		if err := fw.WaitClientFIN(ctxFor(t, 10*time.Second), 1); err != nil {
			t.Fatal(err)
		}
		if b, err := readAll(c, 10*time.Second); string(b) != "got req" {
			t.Fatalf("client got %q, %v; want the reply", b, err)
		}
	})
}
