package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// demoUpstream is the upstream used when -upstream is empty: a line echo
// that prefixes every line with the number of the upstream connection
// that served it ("upstream conn #3: hello"), so that a user sees spares
// and reuse at work. It is plain TCP on loopback, for trying the proxy on
// a machine with nothing else.
type demoUpstream struct {
	ln  net.Listener
	log *slog.Logger

	mu     sync.Mutex
	closed bool // close was called; guarded by mu
	conns  map[net.Conn]struct{}
	next   int // the last connection number given out
	wg     sync.WaitGroup
}

// listenDemo starts listening on a loopback port of the kernel's choice.
// Call serve to accept, close to stop.
func listenDemo(log *slog.Logger) (*demoUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	return &demoUpstream{ln: ln, log: log, conns: make(map[net.Conn]struct{})}, nil
}

func (d *demoUpstream) addr() string { return d.ln.Addr().String() }

// serve accepts until close is called, then waits for every connection's
// goroutine and returns nil. Any other accept error ends it.
func (d *demoUpstream) serve() error {
	defer d.wg.Wait()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("demo upstream: accept: %w", err)
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return nil
		}
		d.next++
		n := d.next
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go d.echo(c, n)
	}
}

// close stops accepting and closes every open connection. It is safe to
// call more than once, also before or after serve returned.
func (d *demoUpstream) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	d.ln.Close()
	for c := range d.conns {
		c.Close()
	}
}

// echo serves one connection: every line comes back with a prefix naming
// the connection. A line longer than the reader's buffer is echoed in
// pieces, prefixed once.
func (d *demoUpstream) echo(c net.Conn, n int) {
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
		c.Close()
		d.wg.Done()
	}()
	d.log.Debug("demo upstream: conn opened", "conn", n, "peer", c.RemoteAddr())
	prefix := fmt.Appendf(nil, "upstream conn #%d: ", n)
	r := bufio.NewReader(c)
	atStart := true
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			out := chunk
			if atStart {
				out = append(append([]byte(nil), prefix...), chunk...)
			}
			if _, werr := c.Write(out); werr != nil {
				return
			}
			atStart = chunk[len(chunk)-1] == '\n'
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			d.log.Debug("demo upstream: conn closed by peer", "conn", n)
			return
		default:
			return
		}
	}
}
