// Package logbuf is a log destination for relay's tests: a buffer that a
// program under test writes its log to while the test reads it.
package logbuf

import (
	"strings"
	"sync"
)

// Buffer is a strings.Builder safe for concurrent use. The zero value is
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
