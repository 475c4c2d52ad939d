//go:build !linux

package splice

import "time"

// Off Linux nothing is spliced, and so nothing parks: copyToClient keeps
// its goroutine for the whole session.

var parkAfter time.Duration

const canPark = false

func park(*direction) bool { return false }

func unpark(*direction) {}
