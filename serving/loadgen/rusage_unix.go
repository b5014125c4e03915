//go:build unix

package loadgen

import (
	"syscall"
	"time"
)

// processCPU returns the user + system CPU time used so far by this process
// and by its children that have been waited for.
func processCPU() (self, children time.Duration) {
	read := func(who int) time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return read(syscall.RUSAGE_SELF), read(syscall.RUSAGE_CHILDREN)
}
