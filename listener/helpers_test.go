package listener

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaykit/relay/internal/loopback"
	"github.com/relaykit/relay/pool"
)

// server is a real upstream on loopback, run by a test.
type server = loopback.Server

func startServer(tb testing.TB, handle func(c net.Conn)) *server {
	tb.Helper()
	return loopback.Start(tb, handle)
}

func serveOn(tb testing.TB, ln net.Listener, handle func(c net.Conn)) *server {
	return loopback.Serve(tb, ln, handle)
}

// echo copies everything back.
func echo(c net.Conn) { io.Copy(c, c) }

// startProxy starts a ProxyListener on loopback in front of pcfg's
// upstream, serving until the test ends.
func startProxy(tb testing.TB, pcfg pool.Config, cfg Config, tweaks ...func(*ProxyListener)) *ProxyListener {
	tb.Helper()
	l, _ := startProxyServe(tb, pcfg, cfg, tweaks...)
	return l
}

// startProxyServe is startProxy that also returns Serve's error channel.
// tweaks run before Serve starts.
func startProxyServe(tb testing.TB, pcfg pool.Config, cfg Config, tweaks ...func(*ProxyListener)) (*ProxyListener, <-chan error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return startProxyOn(tb, ln, pcfg, cfg, tweaks...)
}

// startProxyOn is startProxyServe on a listener of the test's own.
func startProxyOn(tb testing.TB, ln net.Listener, pcfg pool.Config, cfg Config, tweaks ...func(*ProxyListener)) (*ProxyListener, <-chan error) {
	tb.Helper()
	p, err := pool.New(pcfg)
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	l, err := New(ln, p, cfg)
	if err != nil {
		ln.Close()
		p.Close()
		tb.Fatal(err)
	}
	for _, tweak := range tweaks {
		tweak(l)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		reported := make(chan struct{})
		stuck := context.AfterFunc(ctx, func() {
			defer close(reported)
			tb.Errorf("Shutdown: sessions would not end: %v", l.Sessions())
		})
		if err := l.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if !stuck() {
			<-reported
		}
		p.Close()
	})
	return l, served
}

func dial(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// exchange writes req and reads one line back.
func exchange(c net.Conn, req string) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, err
}

// countFDs returns the number of open file descriptors of this process.
func countFDs(tb testing.TB) int {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skip("fd count needs /proc")
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip(err)
	}
	return len(ents)
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reqServer speaks a line protocol: "REQ <id>\n" is answered by
// "RESP <id>\n" after a random delay up to maxDelay; "PING\r\n" by
// "+PONG\r\n" (a fence). Requests on one conn are answered in order, as
// a pipelining server does.
func reqServer(maxDelay time.Duration, seed uint64) func(net.Conn) {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	delay := func() time.Duration {
		if maxDelay <= 0 {
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		return time.Duration(rng.Int64N(int64(maxDelay)))
	}
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			var reply string
			switch {
			case line == "PING\r\n":
				reply = "+PONG\r\n"
			case strings.HasPrefix(line, "REQ "):
				time.Sleep(delay())
				reply = "RESP " + strings.TrimPrefix(line, "REQ ")
			default:
				reply = "ERR\n"
			}
			if _, err := io.WriteString(c, reply); err != nil && !errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

// fill fills b with bytes from a stream seeded by seed.
func fill(b []byte, seed uint64) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rand.NewChaCha8(key).Read(b)
}
