//go:build !linux

package splice

// spliceState is empty off Linux: every session copies in user space.
type spliceState struct{}

// setupSplice leaves both directions on the user-space copy.
func setupSplice(*session) {}

// spliceCopy is never called off Linux (Spliced is never set).
func (d *direction) spliceCopy() (rerr, werr error) { return errNoSplice, nil }
