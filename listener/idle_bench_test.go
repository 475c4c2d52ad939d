package listener

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// idleChildEnv marks the child process of BenchmarkIdleSession.
const idleChildEnv = "RELAY_BENCH_IDLE_CHILD"

// BenchmarkIdleSession reports what an idle session costs in memory: the
// goroutine stacks (stack-B/session) and heap (heap-B/session) that 300
// sessions hold once bytes went both ways and they sit idle.
//
// Each loop measures in a new child process, since a process that already
// ran goroutines keeps their stack spans and would count new stacks as
// free. The child runs with GODEBUG=adaptivestackstart=0, so that the
// runtime does not start goroutines bigger because the benchmark's own
// were; and under -race every stack grows, so compare figures of builds
// without it:
//
//	go test -run '^$' -bench IdleSession -benchtime 3x ./listener/
//
// These are figures to compare between builds and Go versions, not
// limits: bench/README.md keeps the ledger.
func BenchmarkIdleSession(b *testing.B) {
	if os.Getenv(idleChildEnv) != "" {
		stack, heap := idleSessions(b, 300)
		fmt.Printf("idle-session stack=%.0f heap=%.0f\n", stack, heap)
		return
	}
	re := regexp.MustCompile(`idle-session stack=(-?\d+) heap=(-?\d+)`)
	var stack, heap float64
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkIdleSession$", "-test.benchtime=1x", "-test.count=1")
		cmd.Env = append(os.Environ(), idleChildEnv+"=1", "GODEBUG=adaptivestackstart=0")
		out, err := cmd.CombinedOutput()
		m := re.FindSubmatch(out)
		if err != nil || m == nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		s, _ := strconv.ParseFloat(string(m[1]), 64)
		h, _ := strconv.ParseFloat(string(m[2]), 64)
		stack, heap = stack+s, heap+h
	}
	b.ReportMetric(stack/float64(b.N), "stack-B/session")
	b.ReportMetric(heap/float64(b.N), "heap-B/session")
}

// idleSessions starts a proxy, opens n sessions through it, with the
// upstream side accepted on this goroutine (so that the only goroutines
// added are the proxy's), moves bytes both ways, and returns the stack
// and heap in use per session once they are idle.
func idleSessions(b *testing.B, n int) (stack, heap float64) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	l := startProxy(b, pool.Config{
		Network: "tcp", Addr: up.Addr().String(),
		Spares: 0, // every session dials: accepted below, in order
	}, Config{})

	conns := make([]net.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	buf := make([]byte, 64)
	for i := range n {
		c := dial(b, l.Addr().String())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf[:8]); err != nil {
			b.Fatal(err)
		}
		u, err := up.Accept()
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c, u)
		u.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(u, buf[:8]); err != nil {
			b.Fatalf("session %d: upstream read: %v", i, err)
		}
		if _, err := u.Write(buf[:16]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:16]); err != nil {
			b.Fatalf("session %d: client read: %v", i, err)
		}
	}
	waitFor(b, "sessions in copy", func() bool { return len(l.Sessions()) == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)
	heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
	return stack, heap
}
