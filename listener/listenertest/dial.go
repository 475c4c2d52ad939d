package listenertest

import (
	"context"
	"fmt"
	"net"
	"time"
)

// dialFaults are the faults of the upstream dials. They are immutable;
// changed is closed when they are replaced.
type dialFaults struct {
	unreachable bool
	delay       time.Duration
	changed     chan struct{}
}

// changeDial replaces the dial faults with a changed copy.
func (f *Forwarder) changeDial(change func(*dialFaults)) {
	for {
		old := f.dialf.Load()
		next := *old
		next.changed = make(chan struct{})
		change(&next)
		if f.dialf.CompareAndSwap(old, &next) {
			close(old.changed)
			return
		}
	}
}

// SetUnreachable makes the upstream unreachable (on) or reachable again.
// While it is unreachable, every upstream dial hangs, as a dial to a host
// that drops SYNs does, until the dial's context ends (the pool's
// DialTimeout, pool.DefaultDialTimeout unless set with WithPool), the
// forwarder closes, or the upstream is made reachable again, when the
// dial goes ahead. Clients are still accepted (the forwarder's own
// listener is up) and wait for an upstream, within the ProxyListener's
// GetTimeout, before they are closed. This is what toxiproxy cannot do:
// it dials the real upstream.
func (f *Forwarder) SetUnreachable(on bool) {
	f.changeDial(func(d *dialFaults) { d.unreachable = on })
}

// SetConnectDelay makes every upstream dial started from now on take d
// longer (slow connect); zero removes the delay. It panics on a negative
// d.
func (f *Forwarder) SetConnectDelay(d time.Duration) {
	nonNegative("SetConnectDelay", d)
	f.changeDial(func(df *dialFaults) { df.delay = d })
}

// dial is the pool's Dial: the dial faults, then the real dial.
func (f *Forwarder) dial(ctx context.Context) (net.Conn, error) {
	f.note(func(c *Counts) { c.Dials++ })
	c, err := f.dialFaulty(ctx)
	if err != nil {
		f.note(func(c *Counts) { c.DialFailures++ })
		return nil, err
	}
	u := &upstreamConn{Conn: c, f: f}
	f.mu.Lock()
	f.ups[u] = struct{}{}
	f.mu.Unlock()
	return u, nil
}

func (f *Forwarder) dialFaulty(ctx context.Context) (net.Conn, error) {
	df := f.dialf.Load()
	if df.delay > 0 {
		t := time.NewTimer(df.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("listenertest: dial %s: slow connect (%v): %w", f.upstream, df.delay, ctx.Err())
		case <-f.stop:
			t.Stop()
			return nil, ErrClosed
		}
	}
	for {
		df = f.dialf.Load()
		if !df.unreachable {
			break
		}
		select {
		case <-df.changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("listenertest: dial %s: upstream unreachable: %w", f.upstream, ctx.Err())
		case <-f.stop:
			return nil, ErrClosed
		}
	}
	return f.baseDial(ctx)
}
