package listenertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The timing assertions here are lower bounds and orderings only: the
// machines running them are small and noisy, so a fault must make things
// at least this slow, and nothing is asserted about how fast they are.

// blob answers a line "n" with n bytes, and a line "put n" followed by n
// bytes with "ok\n" once it has them all.
func blob(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSpace(line)
		if n, ok := strings.CutPrefix(line, "put "); ok {
			size, _ := strconv.Atoi(n)
			if _, err := io.CopyN(io.Discard, r, int64(size)); err != nil {
				return
			}
			io.WriteString(c, "ok\n")
			continue
		}
		size, _ := strconv.Atoi(line)
		if _, err := c.Write(bytes.Repeat([]byte("x"), size)); err != nil {
			return
		}
	}
}

func TestLatency(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  Direction
		min  time.Duration
	}{
		{"upstream", Upstream, 80 * time.Millisecond},
		{"downstream", Downstream, 80 * time.Millisecond},
		{"both", Both, 160 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw, _ := newEcho(t)
			fw.Set(tc.dir, Latency(100*time.Millisecond, 20*time.Millisecond))
			c := dial(t, fw.Addr())
			for range 3 {
				start := time.Now()
				got, err := exchange(c, "hello\n", 10*time.Second)
				if err != nil || got != "hello\n" {
					t.Fatalf("exchange: got %q, %v; want hello", got, err)
				}
				if el := time.Since(start); el < tc.min {
					t.Errorf("exchange took %v; want at least %v", el, tc.min)
				}
			}
		})
	}
}

func TestBandwidth(t *testing.T) {
	const (
		rate = 64 << 10
		size = 48 << 10
	)
	// The first piece (rate/50) passes at once; the rest is paced.
	want := paced(size-rate/50, rate) - 50*time.Millisecond
	for _, tc := range []struct {
		name   string
		dir    Direction
		shared bool
	}{
		{"upload", Upstream, false},
		{"download", Downstream, false},
		{"download shared", Downstream, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, blob)
			fw := New(t, srv.Addr())
			f := Bandwidth(rate)
			if tc.shared {
				f = SharedBandwidth(rate)
			}
			fw.Set(tc.dir, f)
			c := dial(t, fw.Addr())
			c.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			if tc.dir == Upstream {
				fmt.Fprintf(c, "put %d\n", size)
				if _, err := c.Write(make([]byte, size)); err != nil {
					t.Fatal(err)
				}
				if got, err := bufio.NewReader(c).ReadString('\n'); got != "ok\n" {
					t.Fatalf("got %q, %v; want ok", got, err)
				}
			} else {
				fmt.Fprintf(c, "%d\n", size)
				if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
					t.Fatal(err)
				}
			}
			if el := time.Since(start); el < want {
				t.Errorf("%d bytes at %d B/s took %v; want at least %v", size, rate, el, want)
			}
			st := fw.Sessions()[0].State()
			if tc.dir == Downstream && st.ToClient != size {
				t.Errorf("ToClient = %d; want %d", st.ToClient, size)
			}
		})
	}
}

// TestSharedBandwidth: two sessions share one bucket, so together they
// take as long as one session moving both loads.
func TestSharedBandwidth(t *testing.T) {
	const (
		rate = 64 << 10
		size = 24 << 10
	)
	want := paced(2*size-2*rate/50, rate) - 50*time.Millisecond
	srv := startServer(t, blob)
	fw := New(t, srv.Addr())
	fw.Set(Downstream, SharedBandwidth(rate))
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		c := dial(t, fw.Addr())
		go func() {
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "%d\n", size)
			_, err := io.ReadFull(c, make([]byte, size))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < want {
		t.Errorf("2 x %d bytes through a shared %d B/s took %v; want at least %v", size, rate, el, want)
	}
}

// paced is how long n bytes take at rate bytes/s.
func paced(n, rate int) time.Duration {
	return time.Duration(float64(n) / float64(rate) * float64(time.Second))
}

// reads records the sizes of the reads of a stream until EOF.
func reads(r io.Reader) (sizes []int, data []byte, err error) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			sizes = append(sizes, n)
			data = append(data, buf[:n]...)
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return sizes, data, err
		}
	}
}

func TestSlicer(t *testing.T) {
	const size = 100
	payload := bytes.Repeat([]byte("0123456789"), size/10)
	// At most 13 bytes a slice: at least 8 slices, 7 delays of 10 ms.
	const want = 60 * time.Millisecond

	t.Run("downstream", func(t *testing.T) {
		srv := startServer(t, func(c net.Conn) {
			c.Write(payload)
		})
		fw := New(t, srv.Addr())
		fw.Set(Downstream, Slicer(10, 3, 10*time.Millisecond))
		start := time.Now() // before the dial: every slice's delay comes after it
		c := dial(t, fw.Addr())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		sizes, data, err := reads(c)
		if err != nil || !bytes.Equal(data, payload) {
			t.Fatalf("got %q, %v; want the payload", data, err)
		}
		if el := time.Since(start); el < want || len(sizes) < 2 {
			t.Errorf("%d bytes came in %d reads %v over %v; want slices over at least %v", size, len(sizes), sizes, el, want)
		}
	})
	t.Run("upstream", func(t *testing.T) {
		type result struct {
			sizes []int
			data  []byte
			last  time.Time // when the last byte was read
		}
		got := make(chan result, 1)
		srv := startServer(t, func(c net.Conn) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 4096)
			var r result
			for {
				n, err := c.Read(buf)
				if n > 0 {
					r.sizes = append(r.sizes, n)
					r.data = append(r.data, buf[:n]...)
				}
				if err != nil || len(r.data) >= size {
					break
				}
			}
			r.last = time.Now()
			got <- r
		})
		fw := New(t, srv.Addr())
		fw.Set(Upstream, Slicer(10, 3, 10*time.Millisecond))
		c := dial(t, fw.Addr())
		start := time.Now() // before the write: every slice's delay comes after it
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if !bytes.Equal(r.data, payload) {
			t.Fatalf("upstream got %q; want the payload", r.data)
		}
		if took := r.last.Sub(start); took < want || len(r.sizes) < 2 {
			t.Errorf("%d bytes came in %d reads %v over %v; want slices over at least %v", size, len(r.sizes), r.sizes, took, want)
		}
	})
}

func TestLimitData(t *testing.T) {
	t.Run("downstream", func(t *testing.T) {
		srv := startServer(t, func(c net.Conn) {
			c.Write(bytes.Repeat([]byte("x"), 100))
			io.Copy(io.Discard, c)
		})
		fw := New(t, srv.Addr())
		fw.Set(Downstream, LimitData(10))
		c := dial(t, fw.Addr())
		data, err := readAll(c, 10*time.Second)
		if len(data) != 10 || err != nil {
			t.Fatalf("client got %d bytes, %v; want 10 bytes then EOF", len(data), err)
		}
	})
	t.Run("upstream", func(t *testing.T) {
		srv, recorded := recordingServer(t)
		fw := New(t, srv.Addr())
		fw.Set(Upstream, LimitData(10))
		c := dial(t, fw.Addr())
		c.Write(bytes.Repeat([]byte("x"), 100))
		if data := recorded(); len(data) != 10 {
			t.Fatalf("upstream got %d bytes; want 10", len(data))
		}
		if _, err := readAll(c, 10*time.Second); err != nil && !isReset(err) {
			t.Fatalf("client: %v; want EOF or a reset", err)
		}
	})
}

func TestBlackhole(t *testing.T) {
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			fw, _ := newEcho(t)
			c := dial(t, fw.Addr())
			if _, err := exchange(c, "before\n", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			fw.Set(dir, Blackhole(0))
			got, err := exchange(c, "held\n", 200*time.Millisecond)
			if !isTimeout(err) {
				t.Fatalf("exchange under a blackhole: got %q, %v; want a timeout", got, err)
			}
			// The bytes were held, not dropped: they flow once it is lifted.
			fw.Set(dir)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if got+line != "held\n" {
				t.Fatalf("after the blackhole: got %q, %v; want held", got+line, err)
			}
		})
	}
}

func TestBlackholeCloseAfter(t *testing.T) {
	fw, _ := newEcho(t)
	fw.Set(Downstream, Blackhole(150*time.Millisecond))
	c := dial(t, fw.Addr())
	start := time.Now()
	got, err := exchange(c, "hello\n", 10*time.Second)
	if got != "" || (err != io.EOF && !isReset(err)) {
		t.Fatalf("got %q, %v; want the session cut (EOF)", got, err)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("cut after %v; want at least 150ms", el)
	}
}

func TestResetAfter(t *testing.T) {
	needLinux(t)
	t.Run("delay", func(t *testing.T) {
		fw, _ := newEcho(t)
		fw.Set(Downstream, ResetAfter(150*time.Millisecond))
		c := dial(t, fw.Addr())
		start := time.Now()
		// The first chunk passes and starts the clock.
		if got, err := exchange(c, "hello\n", 10*time.Second); err != nil {
			t.Fatalf("first exchange: got %q, %v", got, err)
		}
		_, err := readAll(c, 10*time.Second)
		if !isReset(err) {
			t.Fatalf("read: %v; want a reset", err)
		}
		if el := time.Since(start); el < 150*time.Millisecond {
			t.Errorf("reset after %v; want at least 150ms", el)
		}
	})
	t.Run("at once", func(t *testing.T) {
		fw, _ := newEcho(t)
		fw.Set(Downstream, ResetAfter(0))
		c := dial(t, fw.Addr())
		if got, err := exchange(c, "hello\n", 10*time.Second); !isReset(err) {
			t.Fatalf("got %q, %v; want a reset", got, err)
		}
	})
}

func TestResetAfterBytes(t *testing.T) {
	needLinux(t)
	t.Run("downstream", func(t *testing.T) {
		fw, _ := newEcho(t)
		fw.Set(Downstream, ResetAfterBytes(3))
		c := dial(t, fw.Addr())
		got, err := exchange(c, "hello\n", 10*time.Second)
		if len(got) > 3 || !isReset(err) {
			t.Fatalf("got %q, %v; want at most 3 bytes, then a reset", got, err)
		}
	})
	t.Run("upstream", func(t *testing.T) {
		srv, recorded := recordingServer(t)
		fw := New(t, srv.Addr())
		fw.Set(Upstream, ResetAfterBytes(3))
		c := dial(t, fw.Addr())
		io.WriteString(c, "hello\n")
		if data := recorded(); string(data) != "hel" {
			t.Fatalf("upstream got %q; want hel", data)
		}
		if _, err := readAll(c, 10*time.Second); !isReset(err) {
			t.Fatalf("client: %v; want a reset", err)
		}
	})
}

func TestSlowClose(t *testing.T) {
	const delay = 150 * time.Millisecond
	t.Run("downstream", func(t *testing.T) {
		closed := make(chan time.Time, 1)
		srv := startServer(t, func(c net.Conn) {
			io.WriteString(c, "bye\n")
			closed <- time.Now() // the server closes when this returns
		})
		fw := New(t, srv.Addr())
		fw.Set(Downstream, SlowClose(delay))
		c := dial(t, fw.Addr())
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if line != "bye\n" {
			t.Fatalf("got %q, %v; want bye", line, err)
		}
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("after bye: %v; want EOF", err)
		}
		// The client's EOF comes at least delay after the server closed,
		// however slowly this machine runs the test.
		if el := time.Since(<-closed); el < delay {
			t.Errorf("EOF %v after the server closed; want at least %v", el, delay)
		}
	})
	t.Run("upstream", func(t *testing.T) {
		eof := make(chan time.Time, 1)
		srv := startServer(t, func(c net.Conn) {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c)
			eof <- time.Now()
		})
		fw := New(t, srv.Addr())
		fw.Set(Upstream, SlowClose(delay))
		c := dial(t, fw.Addr())
		io.WriteString(c, "x")
		sent := time.Now()
		c.(*net.TCPConn).CloseWrite()
		if el := (<-eof).Sub(sent); el < delay {
			t.Errorf("upstream saw EOF %v after the client's FIN; want at least %v", el, delay)
		}
	})
}

func TestHook(t *testing.T) {
	type call struct {
		dir   Direction
		chunk string
	}
	var (
		mu     sync.Mutex // the hooks of the two directions run on two goroutines
		calls  []call
		action = Pass()
	)
	setAction := func(a Action) {
		mu.Lock()
		action = a
		mu.Unlock()
	}
	fw, _ := newEcho(t)
	fw.Set(Both, Hook(func(s *Session, dir Direction, chunk []byte) Action {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{dir, string(chunk)})
		if dir == Downstream {
			return action
		}
		return Pass()
	}))
	c := dial(t, fw.Addr())
	if got, err := exchange(c, "one\n", 10*time.Second); got != "one\n" {
		t.Fatalf("pass: got %q, %v", got, err)
	}
	want := []call{{Upstream, "one\n"}, {Downstream, "one\n"}}
	mu.Lock()
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("calls = %v; want %v", calls, want)
	}
	mu.Unlock()

	setAction(Delay(100 * time.Millisecond))
	start := time.Now()
	if got, err := exchange(c, "two\n", 10*time.Second); got != "two\n" {
		t.Fatalf("delay: got %q, %v", got, err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("delayed exchange took %v; want at least 100ms", el)
	}

	setAction(Drop())
	if got, err := exchange(c, "three\n", 10*time.Second); got != "" || err != io.EOF {
		t.Fatalf("drop: got %q, %v; want EOF", got, err)
	}

	if runtime.GOOS == "linux" {
		setAction(Reset())
		c := dial(t, fw.Addr())
		if got, err := exchange(c, "four\n", 10*time.Second); got != "" || !isReset(err) {
			t.Fatalf("reset: got %q, %v; want a reset", got, err)
		}
	}
}

func TestBackpressure(t *testing.T) {
	// What the kernel buffers on loopback is a few MB at most; a fault
	// that buffered would let the writer write all 64 MB.
	const (
		total = 64 << 20
		bound = 32 << 20
	)
	// writeUntilBlocked writes 1 MB at a time until a write times out.
	writeUntilBlocked := func(c net.Conn) (int64, error) {
		buf := make([]byte, 1<<20)
		var n int64
		for n < total {
			c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			m, err := c.Write(buf)
			n += int64(m)
			if err != nil {
				if isTimeout(err) {
					return n, nil
				}
				return n, err
			}
		}
		return n, errors.New("never blocked")
	}
	for _, tc := range []struct {
		name  string
		dir   Direction
		fault Fault
	}{
		{"blackhole downstream", Downstream, Blackhole(0)},
		{"blackhole upstream", Upstream, Blackhole(0)},
		{"slow downstream", Downstream, Bandwidth(64 << 10)},
		{"slow upstream", Upstream, Bandwidth(64 << 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wrote := make(chan int64, 1)
			srv := startServer(t, func(c net.Conn) {
				if tc.dir == Downstream {
					n, err := writeUntilBlocked(c)
					if err != nil {
						t.Errorf("upstream writer: %v", err)
					}
					wrote <- n
				}
				io.Copy(io.Discard, c) // a reader that keeps up
			})
			fw := New(t, srv.Addr())
			fw.Set(tc.dir, tc.fault)
			c := dial(t, fw.Addr())
			var n int64
			if tc.dir == Upstream {
				var err error
				if n, err = writeUntilBlocked(c); err != nil {
					t.Fatalf("client writer: %v", err)
				}
			} else {
				n = <-wrote
			}
			if n <= 0 || n > bound {
				t.Errorf("the writer wrote %d bytes before it blocked; want some, and at most %d", n, bound)
			}
			st := fw.Sessions()[0].State()
			t.Logf("writer blocked after %d bytes; %v", n, st)
		})
	}
}
