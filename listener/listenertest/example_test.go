package listenertest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/relaykit/relay/listener/listenertest"
)

// In a test, pass the test's *testing.T to listenertest.New. An Example
// has none, so these use exampleT, a stand-in with the same methods.
type exampleT struct {
	name     string
	cleanups []func()
}

func newExampleT(name string) *exampleT { return &exampleT{name: name} }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Name() string                      { return t.name }
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Logf(format string, args ...any)   {}
func (t *exampleT) Errorf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// finish runs the cleanups, last first, as the testing package does.
func (t *exampleT) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// startUpstream runs handle for each connection to a server on
// 127.0.0.1:0 until the test ends, and returns the server's address.
func startUpstream(t *exampleT, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echoLines answers each line with the same line.
func echoLines(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(c, line)
	}
}

// call is the client under test: one request line, one reply line.
func call(c net.Conn, req string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(reply), err
}

// callWithRetry is client code that retries on a new connection.
func callWithRetry(addr, req string, attempts int) (reply string, tries int, err error) {
	for tries = 1; tries <= attempts; tries++ {
		var c net.Conn
		if c, err = net.Dial("tcp", addr); err != nil {
			continue
		}
		reply, err = call(c, req, 5*time.Second)
		c.Close()
		if err == nil {
			return reply, tries, nil
		}
	}
	return "", attempts, err
}

// A client's retry logic, tested with a reset: the forwarder resets the
// first connection when the reply comes, and the client must try again.
func Example_retryAfterReset() {
	t := newExampleT("Example_retryAfterReset")
	defer t.finish()
	upstream := startUpstream(t, echoLines)

	fw := listenertest.New(t, upstream)
	fw.Set(listenertest.Downstream, listenertest.Hook(
		func(s *listenertest.Session, _ listenertest.Direction, _ []byte) listenertest.Action {
			if s.ID() == 1 {
				return listenertest.Reset()
			}
			return listenertest.Pass()
		}))

	reply, tries, err := callWithRetry(fw.Addr(), "ping", 3)
	fmt.Printf("reply %q after %d tries, err %v\n", reply, tries, err)
	// Output: reply "ping" after 2 tries, err <nil>
}

// A read timeout, tested with a blackhole: the request reaches the
// upstream, the reply never comes back, the connection stays open.
func Example_readTimeoutWithBlackhole() {
	t := newExampleT("Example_readTimeoutWithBlackhole")
	defer t.finish()
	upstream := startUpstream(t, echoLines)

	fw := listenertest.New(t, upstream)
	fw.Set(listenertest.Downstream, listenertest.Blackhole(0))

	c, err := net.Dial("tcp", fw.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_, err = call(c, "ping", 100*time.Millisecond)
	var ne net.Error
	fmt.Println("timed out:", errors.As(err, &ne) && ne.Timeout())
	// Output: timed out: true
}

// An upload, tested under a bandwidth limit: 16 KiB at 32 KiB/s take
// about half a second.
func Example_uploadUnderBandwidthLimit() {
	t := newExampleT("Example_uploadUnderBandwidthLimit")
	defer t.finish()
	upstream := startUpstream(t, func(c net.Conn) {
		// A line with the size, then the bytes.
		r := bufio.NewReader(c)
		var size int64
		fmt.Fscanln(r, &size)
		n, _ := io.CopyN(io.Discard, r, size)
		fmt.Fprintf(c, "stored %d bytes\n", n)
	})

	fw := listenertest.New(t, upstream)
	fw.Set(listenertest.Upstream, listenertest.Bandwidth(32<<10))

	c, err := net.Dial("tcp", fw.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	data := make([]byte, 16<<10)
	fmt.Fprintf(c, "%d\n", len(data))
	c.Write(data)
	reply, err := bufio.NewReader(c).ReadString('\n')
	fmt.Print(reply)
	fmt.Println("took at least 400ms:", time.Since(start) >= 400*time.Millisecond, err)
	// Output:
	// stored 16384 bytes
	// took at least 400ms: true <nil>
}

// reconnecting is client code that redials when its connection fails.
type reconnecting struct {
	addr string
	c    net.Conn
}

func (r *reconnecting) Call(req string) (string, error) {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(20 * time.Millisecond) // backoff
		}
		if r.c == nil {
			if r.c, err = net.Dial("tcp", r.addr); err != nil {
				continue
			}
		}
		var reply string
		if reply, err = call(r.c, req, 5*time.Second); err == nil {
			return reply, nil
		}
		r.c.Close()
		r.c = nil
	}
	return "", err
}

// A reconnect, tested with down and up: while the forwarder is down its
// live connection is reset and new ones are refused; once it is up, the
// client's next call reconnects.
func Example_reconnectAfterDown() {
	t := newExampleT("Example_reconnectAfterDown")
	defer t.finish()
	upstream := startUpstream(t, echoLines)
	fw := listenertest.New(t, upstream)

	client := &reconnecting{addr: fw.Addr()}
	defer func() {
		if client.c != nil {
			client.c.Close()
		}
	}()
	reply, err := client.Call("one")
	fmt.Println("before:", reply, err)

	fw.Down()
	_, err = client.Call("two")
	fmt.Println("while down, failed:", err != nil)

	fw.Up()
	reply, err = client.Call("three")
	fmt.Println("after up:", reply, err)
	fmt.Println("sessions:", fw.Counts().Accepted)
	// Output:
	// before: one <nil>
	// while down, failed: true
	// after up: three <nil>
	// sessions: 2
}
