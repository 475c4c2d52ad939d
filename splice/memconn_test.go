package splice

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/deadline"

	"golang.org/x/net/nettest"
)

// memPipe returns an in-memory stream pair like net.Pipe, but buffered
// (memCap bytes each way) and with CloseWrite, so that half-close and
// drain logic can run in a synctest bubble. TestMemConn checks it against
// nettest.TestConn.
func memPipe() (*memConn, *memConn) {
	ab, ba := newMemQueue(), newMemQueue()
	a := &memConn{in: ba, out: ab, done: make(chan struct{})}
	b := &memConn{in: ab, out: ba, done: make(chan struct{})}
	a.rd = deadline.New()
	a.wd = deadline.New()
	b.rd = deadline.New()
	b.wd = deadline.New()
	return a, b
}

const memCap = 64 << 10

// memQueue is one direction of a memPipe.
type memQueue struct {
	mu     sync.Mutex
	buf    []byte
	eof    bool          // the writer closed its write half
	gone   bool          // the reader closed: writes fail
	notify chan struct{} // closed and replaced on every change
}

func newMemQueue() *memQueue { return &memQueue{notify: make(chan struct{})} }

// changedLocked wakes everyone waiting on q.
func (q *memQueue) changedLocked() {
	close(q.notify)
	q.notify = make(chan struct{})
}

type memConn struct {
	in, out *memQueue
	rd, wd  *deadline.Deadline
	once    sync.Once
	done    chan struct{} // closed by Close
}

func (c *memConn) Read(p []byte) (int, error) {
	for {
		select {
		case <-c.done:
			return 0, net.ErrClosed
		case <-c.rd.Wait():
			return 0, os.ErrDeadlineExceeded
		default:
		}
		q := c.in
		q.mu.Lock()
		if len(q.buf) > 0 || len(p) == 0 {
			n := copy(p, q.buf)
			q.buf = q.buf[n:]
			q.changedLocked()
			q.mu.Unlock()
			return n, nil
		}
		if q.eof {
			q.mu.Unlock()
			return 0, io.EOF
		}
		notify := q.notify
		q.mu.Unlock()
		select {
		case <-notify:
		case <-c.rd.Wait():
		case <-c.done:
		}
	}
}

func (c *memConn) Write(p []byte) (int, error) {
	n := 0
	for {
		select {
		case <-c.done:
			return n, net.ErrClosed
		case <-c.wd.Wait():
			return n, os.ErrDeadlineExceeded
		default:
		}
		q := c.out
		q.mu.Lock()
		if q.eof {
			q.mu.Unlock()
			return n, io.ErrClosedPipe // our write half is closed
		}
		if q.gone {
			q.mu.Unlock()
			return n, io.ErrClosedPipe
		}
		if k := min(memCap-len(q.buf), len(p)-n); k > 0 {
			q.buf = append(q.buf, p[n:n+k]...)
			n += k
			q.changedLocked()
		}
		if n == len(p) {
			q.mu.Unlock()
			return n, nil
		}
		notify := q.notify
		q.mu.Unlock()
		select {
		case <-notify:
		case <-c.wd.Wait():
		case <-c.done:
		}
	}
}

// CloseWrite sends EOF to the peer; reads go on.
func (c *memConn) CloseWrite() error {
	select {
	case <-c.done:
		return net.ErrClosed
	default:
	}
	c.out.mu.Lock()
	c.out.eof = true
	c.out.changedLocked()
	c.out.mu.Unlock()
	return nil
}

func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.rd.Set(time.Time{})
		c.wd.Set(time.Time{})
		c.in.mu.Lock()
		c.in.gone = true
		c.in.changedLocked()
		c.in.mu.Unlock()
		c.out.mu.Lock()
		c.out.eof = true
		c.out.changedLocked()
		c.out.mu.Unlock()
	})
	return nil
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}
func (c *memConn) SetReadDeadline(t time.Time) error  { c.rd.Set(t); return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { c.wd.Set(t); return nil }
func (c *memConn) LocalAddr() net.Addr                { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// TestMemConn checks the test's in-memory conn against nettest, so that
// the synctest tests built on it test Join and not a faulty fake.
func TestMemConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := memPipe()
		return a, b, func() { a.Close(); b.Close() }, nil
	})
	t.Run("CloseWrite", func(t *testing.T) {
		a, b := memPipe()
		defer a.Close()
		defer b.Close()
		a.Write([]byte("x"))
		a.CloseWrite()
		got, err := io.ReadAll(b)
		if string(got) != "x" || err != nil {
			t.Errorf("got %q, %v; want %q, nil", got, err, "x")
		}
		if _, err := b.Write([]byte("y")); err != nil {
			t.Errorf("got %v; want nil (the other half is open)", err)
		}
		buf := make([]byte, 1)
		if n, err := a.Read(buf); n != 1 || err != nil {
			t.Errorf("got %d, %v; want 1, nil", n, err)
		}
	})
}
