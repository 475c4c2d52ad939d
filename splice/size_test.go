package splice

import (
	"testing"
	"unsafe"
)

// The session lives as long as the session does, idle or not, so its
// allocation size class is part of what an idle session costs: 896 bytes
// on 64-bit platforms. One more field can move it into the next class,
// 1024 bytes; this test says so when it happens.
func TestSessionSizeClass(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budget is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(session{}); got > 896 {
		t.Errorf("session is %d bytes, past the 896-byte size class; reorder fields or trim one", got)
	}
}
