package listener

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bigSendBuf sets a large send buffer on every conn it accepts: the relay
// then holds, unsent, what a client that does not read yet cannot take.
type bigSendBuf struct{ net.Listener }

func (l bigSendBuf) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(1 << 20)
	}
	return c, err
}

// smallRecvDial dials addr with a small receive buffer, set before the
// connect so that the window stays small.
func smallRecvDial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitSent waits until c's kernel has nothing left to send.
func waitSent(c net.Conn) error {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		n, ierr := 0, error(nil)
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
			return errors.Join(err, ierr)
		}
		if n == 0 {
			return nil
		}
	}
	return errors.New("bytes still unsent")
}

// TestLingerKeepsLastReply: an upstream answers (a bulk, then its last
// reply) and goes away while the client is still sending and has not
// read the answer yet. The session ends with most of the answer still in
// the relay's send buffer; the client, which reads only after the
// session ended, still gets all of it, every round, with either reuse
// policy.
//
// This used to break, in every round: the client was closed with its
// input unread, so its kernel sent a reset instead of a FIN and dropped
// the answer's unsent bytes.
func TestLingerKeepsLastReply(t *testing.T) {
	const rounds = 16
	msg := strings.Repeat("b", 128<<10) + "-ERR Protocol error: last reply\r\n"
	for _, pol := range lingerPolicies {
		t.Run(pol.name, func(t *testing.T) {
			up := startServer(t, func(c net.Conn) {
				c.Write([]byte(msg))
				// The pool's last spare is never used: the server's
				// cleanup closes it while it waits.
				if err := waitSent(c); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Error(err)
				}
				// Returning closes c: with the flood unread, a reset.
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg, ended := sessionEnds()
			// A long linger: the client reads when it likes, no race.
			l, _ := startProxyOn(t, bigSendBuf{ln}, pol.cfg(up.Addr()), cfg, func(l *ProxyListener) { l.linger = time.Minute })
			arrived := 0
			for i := range rounds {
				c := smallRecvDial(t, l.Addr().String())
				c.SetDeadline(time.Now().Add(30 * time.Second))
				flood := clientFlood(c)
				waitEnded(t, ended)
				var got bytes.Buffer
				_, err := got.ReadFrom(c)
				if got.String() == msg && err == nil {
					arrived++
				} else if i == 0 {
					t.Logf("round 0: read %d bytes, %v; want %d, then EOF", got.Len(), err, len(msg))
				}
				c.Close()
				<-flood
			}
			if arrived != rounds {
				t.Errorf("the last reply arrived in %d of %d rounds; want all", arrived, rounds)
			}
		})
	}
}
