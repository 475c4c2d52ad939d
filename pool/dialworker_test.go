package pool

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
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
// another, they all run on the same goroutine, never the caller's. A
// worker idle for dialWorkerIdle exits, and the next dial starts another.
func TestCallerDialsReuseWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &pipeDialer{}
		t.Cleanup(d.Close)
		var (
			mu  sync.Mutex
			ids []uint64
		)
		p := newPool(t, Config{Dial: func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			ids = append(ids, goid())
			mu.Unlock()
			return d.Dial(ctx)
		}})
		get := func() {
			t.Helper()
			synctest.Wait() // the worker is back waiting for a dial
			l, err := p.Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if l.Source() != SourceDial {
				t.Errorf("source %v; want dial", l.Source())
			}
			l.Release(Verdict{Used: true})
		}

		caller := goid()
		for range 4 {
			get()
		}
		time.Sleep(dialWorkerIdle + time.Millisecond)
		get()

		mu.Lock()
		defer mu.Unlock()
		if len(ids) != 5 {
			t.Fatalf("got %d dials; want 5", len(ids))
		}
		for i, id := range ids[:4] {
			if id == caller || id == 0 {
				t.Errorf("dial %d ran on goroutine %d (caller %d)", i, id, caller)
			}
			if id != ids[0] {
				t.Errorf("dial %d ran on goroutine %d; want the worker %d again", i, id, ids[0])
			}
		}
		if ids[4] == ids[0] {
			t.Errorf("the dial after %v idle ran on the old worker %d; want a new one", dialWorkerIdle, ids[0])
		}
	})
}
