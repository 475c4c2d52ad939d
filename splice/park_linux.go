package splice

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// canPark reports whether parking is available on this platform.
const canPark = true

// parker waits, on one goroutine for the whole process, for the
// upstream sockets of parked directions to become readable. Each parked
// direction has its socket registered for one event (EPOLLONESHOT) in a
// private epoll instance, keyed by an id. The epoll fd is itself waited
// on through Go's poller, so no thread blocks in epoll_wait. The epoll
// instance and its goroutine exist only while something is parked.
type parker struct {
	mu     sync.Mutex
	file   *os.File // the epoll instance; nil when nothing is parked
	fd     int      // file's fd (file.Fd would make it blocking)
	parked map[uint64]*direction
	nextID uint64
}

var theParker parker

// park registers d's source socket for one readiness event and reports
// whether it did; d's goroutine may then return. It is called with d.s.mu
// held.
func park(d *direction) bool {
	p := &theParker
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file == nil && !p.start() {
		return false
	}
	p.nextID++
	id := p.nextID
	var err error
	cerr := d.sp.srcRaw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
			Fd:     int32(uint32(id)),
			Pad:    int32(uint32(id >> 32)),
		}
		err = unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil || err != nil {
		p.stopIfIdleLocked()
		return false
	}
	p.parked[id] = d
	d.parkID = id
	return true
}

// unpark removes d's registration. It is called with d.s.mu held, for a
// parked d.
func unpark(d *direction) {
	p := &theParker
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked[d.parkID] != d {
		return
	}
	delete(p.parked, d.parkID)
	// The socket is open: Join's caller keeps it until Join returns, and
	// Control holds it meanwhile. ENOENT cannot happen; any error leaves
	// nothing to undo.
	d.sp.srcRaw.Control(func(fd uintptr) {
		unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.stopIfIdleLocked()
}

// start opens the epoll instance and starts its goroutine. It is called
// with p.mu held.
func (p *parker) start() bool {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return false
	}
	f := os.NewFile(uintptr(epfd), "splice-park")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	p.file, p.fd = f, epfd
	if p.parked == nil {
		p.parked = make(map[uint64]*direction)
	}
	go p.wait(f, raw)
	return true
}

// stopIfIdleLocked closes the epoll instance once nothing is parked; its
// goroutine then returns. It is called with p.mu held.
func (p *parker) stopIfIdleLocked() {
	if len(p.parked) == 0 && p.file != nil {
		p.file.Close()
		p.file, p.fd = nil, -1
	}
}

// wait is the parker's goroutine: it waits for events on f (an epoll
// instance) and wakes the directions they are for, until f is closed.
func (p *parker) wait(f *os.File, raw syscall.RawConn) {
	var events [64]unix.EpollEvent
	for {
		n := 0
		err := raw.Read(func(fd uintptr) bool {
			for {
				var werr error
				n, werr = unix.EpollWait(int(fd), events[:], 0)
				if werr == unix.EINTR {
					continue
				}
				// Nothing ready (or an error): wait for the epoll fd to
				// become readable again.
				return werr == nil && n > 0
			}
		})
		if err != nil {
			return // closed: nothing is parked
		}
		for _, ev := range events[:n] {
			p.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// wake resumes the direction parked under id, unless it was unparked
// meanwhile (by a stop, say).
func (p *parker) wake(id uint64) {
	p.mu.Lock()
	d := p.parked[id]
	p.mu.Unlock()
	if d == nil {
		return
	}
	s := d.s
	s.mu.Lock()
	if d.parked && d.parkID == id {
		s.unparkLocked()
	}
	s.mu.Unlock()
}
