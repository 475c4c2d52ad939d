// Package deadline is a conn deadline kept as a channel that is closed
// when the deadline passes, the way net.Pipe keeps its deadlines. relay's
// in-memory and fault-injecting conns select on it beside their own
// waits, so that a deadline in the past interrupts them as it does a
// socket's Read or Write.
package deadline

import (
	"sync"
	"time"
)

// Deadline is one read or write deadline. It is safe for concurrent use.
// Make it with New.
type Deadline struct {
	mu     sync.Mutex
	t      time.Time
	timer  *time.Timer
	cancel chan struct{} // closed once t has passed
}

// New returns a Deadline that is not set.
func New() *Deadline { return &Deadline{cancel: make(chan struct{})} }

// Set arms the deadline for t; the zero t means none. A t in the past
// closes the Wait channel at once.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for its callback to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		c := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// Get returns the deadline last set (zero: none).
func (d *Deadline) Get() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t
}

// Wait returns a channel that is closed when the deadline passes. A later
// Set may replace the channel: call Wait again for each wait.
func (d *Deadline) Wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
