//go:build !linux

package splice

// Off Linux nothing is spliced, and so nothing parks: copyToClient keeps
// its goroutine for the whole session.

const canPark = false

func park(*direction) bool { return false }

func unpark(*direction) {}
