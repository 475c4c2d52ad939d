//go:build linux && !race

// The race detector raises every goroutine's stack guard, so that stacks
// grow regardless of depth: this test runs without -race (.ci/run runs it
// on its own).

package listener

import (
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/relaykit/relay/pool"
)

// stackChildEnv marks the child process of TestIdleSessionStack.
const stackChildEnv = "RELAY_TEST_STACK_CHILD"

// TestIdleSessionStack checks what an idle session costs in goroutine
// stacks: its two goroutines (the session's, which runs the copy to the
// upstream, and splice's copyToClient) must stay at Go's minimum 2 KiB
// stack after bytes went both ways, not double to 4 KiB. Stacks are most
// of an idle session's memory, and a stack that grew never shrinks back
// while the session is parked under the copy.
//
// The upstream side is served from this goroutine, so that the only
// goroutines the sessions add are the proxy's own. The test runs in a
// child process with GODEBUG=adaptivestackstart=0: otherwise the runtime
// may start new goroutines at 4 KiB when a test's few goroutines had a
// large average stack at the last GC, which is not what is measured here.
func TestIdleSessionStack(t *testing.T) {
	if os.Getenv(stackChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleSessionStack$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), stackChildEnv+"=1", "GODEBUG=adaptivestackstart=0")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return
	}
	const sessions = 300
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	l := startProxy(t, pool.Config{
		Network: "tcp", Addr: up.Addr().String(),
		Spares: 0, // every session dials: accepted below, in order
	}, Config{})

	conns := make([]net.Conn, 0, 2*sessions)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	buf := make([]byte, 64)
	for i := range sessions {
		c := dial(t, l.Addr().String())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf[:8]); err != nil {
			t.Fatal(err)
		}
		u, err := up.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c, u)
		u.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(u, buf[:8]); err != nil {
			t.Fatalf("session %d: upstream read: %v", i, err)
		}
		if _, err := u.Write(buf[:16]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:16]); err != nil {
			t.Fatalf("session %d: client read: %v", i, err)
		}
	}
	waitFor(t, "sessions in copy", func() bool { return len(l.Sessions()) == sessions })

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	perSession := float64(after.StackInuse-before.StackInuse) / sessions
	t.Logf("stack per idle session: %.0f B (%d sessions)", perSession, sessions)
	// Two goroutines at 2 KiB each is 4096; one of them doubled is 6144.
	if perSession > 5*1024 {
		t.Errorf("stack per idle session = %.0f B, want about 4096 (two 2 KiB stacks): a goroutine's stack grew", perSession)
	}
}
