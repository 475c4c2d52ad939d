package splice

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A pipe is the kernel buffer a spliced direction moves bytes through.
// A direction holds one only while data flows, and returns it empty.
type pipe struct {
	r, w    int // read and write ends
	n       int // bytes in the pipe
	cleanup runtime.Cleanup
}

// Pipes keep the kernel's default capacity (64 KiB). Go's own splice asks
// for 1 MiB with F_SETPIPE_SZ; on loopback that measured no faster here,
// and the kernel charges a user's pipes by capacity: while an unprivileged
// user is past fs.pipe-user-pages-soft (64 MiB by default: 64 pipes of
// 1 MiB, or 1024 of 64 KiB), every new pipe of that user gets 8 KiB.
const (
	// maxIdlePipes bounds the pipes kept for reuse. A sync.Pool alone
	// would keep every pipe of a burst open until two GC cycles pass,
	// which in a proxy that hardly allocates can take minutes.
	maxIdlePipes = 64
)

// The pipe pool is shared by all sessions, like Go's own splice pipes.
// Pipes the pool drops are closed by their cleanup.
var (
	pipePool  sync.Pool
	pipesOpen atomic.Int64 // created and not yet closed (includes dropped ones awaiting cleanup)
	pipesBusy atomic.Int64 // held by a direction
)

// getPipe takes an empty pipe from the pool, or makes one.
func getPipe() (*pipe, error) {
	p, _ := pipePool.Get().(*pipe)
	if p == nil {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			return nil, os.NewSyscallError("pipe2", err)
		}
		pipesOpen.Add(1)
		p = &pipe{r: fds[0], w: fds[1]}
		p.cleanup = runtime.AddCleanup(p, closePipeFDs, fds)
	}
	pipesBusy.Add(1)
	return p, nil
}

// putPipe gives p back. A pipe that still holds bytes (stranded by a
// failed write) is closed, never pooled; so is one beyond maxIdlePipes.
func putPipe(p *pipe) {
	busy := pipesBusy.Add(-1)
	if p.n != 0 || pipesOpen.Load()-busy > maxIdlePipes {
		p.cleanup.Stop()
		closePipeFDs([2]int{p.r, p.w})
		return
	}
	pipePool.Put(p)
}

func closePipeFDs(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
	pipesOpen.Add(-1)
}
