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

// Pipes are sized to 1 MiB with F_SETPIPE_SZ, as Go's own splice does
// (see the ledger in bench/README.md). The kernel charges a user's pipes by capacity: while an
// unprivileged user is past fs.pipe-user-pages-soft (64 MiB by default),
// F_SETPIPE_SZ fails (the pipe keeps working at its smaller size) and new
// pipes get 8 KiB. So the pool keeps at most 32 idle pipes (32 MiB of that
// budget); busy pipes are held only while a bulk transfer flows.
const (
	// maxIdlePipes bounds the pipes kept for reuse. A sync.Pool alone
	// would keep every pipe of a burst open until two GC cycles pass,
	// which in a proxy that hardly allocates can take minutes.
	maxIdlePipes = 32

	// pipeSize is the capacity asked for with F_SETPIPE_SZ.
	pipeSize = 1 << 20
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
		// Errors are ignored: a smaller pipe works, with more calls.
		unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
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
