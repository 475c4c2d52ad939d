//go:build !unix

package splice

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
