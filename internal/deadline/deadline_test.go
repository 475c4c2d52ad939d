package deadline

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDeadline(t *testing.T) {
	d := New()
	if isClosed(d.Wait()) || !d.Get().IsZero() {
		t.Fatal("a new Deadline: got it set; want none")
	}
	d.Set(time.Unix(1, 0))
	if !isClosed(d.Wait()) {
		t.Fatal("a deadline in the past: got Wait open; want it closed")
	}
	d.Set(time.Time{})
	if isClosed(d.Wait()) {
		t.Fatal("cleared: got Wait closed; want it open")
	}
	d.Set(time.Now().Add(20 * time.Millisecond))
	select {
	case <-d.Wait():
	case <-time.After(10 * time.Second):
		t.Fatal("a future deadline never passed")
	}
	d.Set(time.Now().Add(time.Hour))
	if isClosed(d.Wait()) {
		t.Fatal("re-armed for later: got Wait closed; want it open")
	}
	d.Set(time.Time{}) // stops the timer
}
