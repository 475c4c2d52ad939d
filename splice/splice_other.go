//go:build !linux

package splice

// spliceState is empty off Linux: every session copies in user space.
type spliceState struct{}

// setupSplice leaves both directions on the user-space copy.
func setupSplice(*session) {}

// spliceCopy is never called off Linux (Spliced is never set); were it
// called, the user-space copy would serve.
func (d *direction) spliceCopy() (rerr, werr error) { return d.bufferCopy() }

// rawCloseWrite never applies off Linux.
func (s *session) rawCloseWrite(Side) bool { return false }
