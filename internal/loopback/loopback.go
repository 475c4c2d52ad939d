// Package loopback runs small upstream servers on 127.0.0.1 for relay's
// tests: each accepted conn gets its own handler goroutine, and the
// server stops in the test's Cleanup, closing every conn and waiting for
// every handler, so goleak stays quiet.
package loopback

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a test server on a loopback listener.
type Server struct {
	ln      net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // live conns, closed by Close
}

// Start listens on 127.0.0.1:0 and serves each conn with handle until the
// test ends.
func Start(tb testing.TB, handle func(c net.Conn)) *Server {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return Serve(tb, ln, handle)
}

// Serve serves each conn accepted from ln with handle until the test ends
// (or Close). The conn is closed when handle returns.
func Serve(tb testing.TB, ln net.Listener, handle func(c net.Conn)) *Server {
	s := &Server{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the listening address as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepts returns how many conns the server has accepted.
func (s *Server) Accepts() int64 { return s.accepts.Load() }

// CloseConns closes the server side of every live conn, as a server with
// an idle limit does, and keeps serving new ones. It returns once each
// peer has taken its FIN (on Linux; elsewhere after a short wait), so a
// peek at the peer's end sees EOF: a FIN sent on loopback is not always
// delivered by the time close returns, for the receive side may run later
// on a busy machine.
func (s *Server) CloseConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		CloseSeen(c)
	}
}

// CloseSeen closes c once its peer has taken its FIN (see CloseConns).
func CloseSeen(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		awaitFINSeen(c, 5*time.Second)
	}
	c.Close()
}

// Close stops accepting, closes every live conn and waits for the
// handlers to return. It is safe to call more than once.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
