package pool

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// goid returns the calling goroutine's ID, from its stack dump's header
// ("goroutine 42 [running]:").
func goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return 0
	}
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// Callers' dials run on a dial worker that outlives them: one after
// another, they all run on the same goroutine, never the caller's.
func TestCallerDialsReuseWorker(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, echo)
	var (
		mu  sync.Mutex
		ids []uint64
	)
	dial := tcpDial(up.Addr())
	p := newPool(t, Config{Addr: up.Addr(), Dial: func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		ids = append(ids, goid())
		mu.Unlock()
		return dial(ctx)
	}})

	caller := goid()
	for i := range 4 {
		l := mustGet(t, p)
		if l.Source() != SourceDial {
			t.Fatalf("Get %d: source %v; want dial", i, l.Source())
		}
		roundTrip(t, l.Conn(), "x")
		l.Release(clean)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 4 {
		t.Fatalf("got %d dials; want 4", len(ids))
	}
	for i, id := range ids {
		if id == caller || id == 0 {
			t.Errorf("dial %d ran on goroutine %d (caller %d)", i, id, caller)
		}
		if id != ids[0] {
			t.Errorf("dial %d ran on goroutine %d; want the worker %d again", i, id, ids[0])
		}
	}
}
