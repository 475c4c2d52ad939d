//go:build unix

package main

import (
	"fmt"
	"io"
	"syscall"
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does this too since Go 1.19; this also reports the result).
func raiseNoFile(w io.Writer) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fmt.Fprintln(w, "bench: getrlimit:", err)
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			fmt.Fprintln(w, "bench: setrlimit:", err)
		}
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}
