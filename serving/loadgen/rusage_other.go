//go:build !unix

package loadgen

import "time"

// processCPU is not measured on this platform: CPU per request reads 0.
func processCPU() (self, children time.Duration) { return 0, 0 }
