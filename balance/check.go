package balance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// checkLoop runs sv's active checks every Check.Every until ctx ends
// (stopLocked: the server drains, or the set closes). The first check
// comes after a random part of the interval, so that servers are not all
// checked at once.
func (sv *server) checkLoop(ctx context.Context) {
	set := sv.set
	defer set.wg.Done()
	every := set.s.Check.Every
	t := time.NewTimer(rand.N(every) + 1)
	defer t.Stop()
	ok, bad := 0, 0 // in a row
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		err := sv.check(ctx)
		if errors.Is(err, errStopped) {
			return
		}
		if err == nil {
			ok, bad = ok+1, 0
		} else {
			ok, bad = 0, bad+1
			sv.checkFailures.Add(1)
		}
		set.mu.Lock()
		switch {
		case err == nil && ok >= set.s.rise:
			sv.markLocked(false)
		case err != nil && bad >= set.s.fall:
			sv.markLocked(true)
		}
		set.mu.Unlock()
		// A failed check counts toward a passive ejection too; a passed
		// one proves the server accepts a dial, not that its sessions
		// work, so it leaves an ejection and its doubling alone.
		if err != nil {
			sv.fail("check: " + err.Error())
		}
		t.Reset(every)
	}
}

var errStopped = errors.New("check stopped")

// check runs one active check under Check.Timeout (and stop, the
// checker's ctx): a dial, then Send and Expect when set.
func (sv *server) check(stop context.Context) error {
	set := sv.set
	ctx, cancel := context.WithTimeout(stop, set.s.checkTimeout)
	defer cancel()
	c, err := sv.dial(ctx)
	if err != nil {
		if stop.Err() != nil {
			return errStopped
		}
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	send, expect := set.s.Check.Send, set.s.Check.Expect
	if len(send) == 0 {
		return nil
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	stopDeadline := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stopDeadline()
	if _, err := c.Write(send); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if len(expect) == 0 {
		return nil
	}
	got := make([]byte, len(expect))
	n, err := io.ReadFull(c, got)
	switch {
	case !bytes.Equal(got[:n], expect[:n]):
		return fmt.Errorf("reply %q does not start with %q", got[:n], expect)
	case err != nil:
		return fmt.Errorf("reply %q, then: %w", got[:n], err)
	}
	return nil
}
