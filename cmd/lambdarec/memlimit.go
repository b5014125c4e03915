package main

import (
	"log/slog"
	"runtime/debug"
)

// capMemoryLimit sets the Go runtime's soft memory limit to want, unless
// the process already runs under a lower one (GOMEMLIMIT, which the
// Kubernetes manifests set from the pod's memory limit): a bound from the
// configuration lowers the limit, never raises it past what the process was
// started with, so a batch.max_memory above the pod's memory cannot lift the
// collector's limit over the container's and end in an OOM kill. It logs a
// warning naming key when want is above the limit in force, and returns the
// limit before the call (to restore it).
func capMemoryLimit(want int64, key string, log *slog.Logger) (before int64) {
	before = debug.SetMemoryLimit(-1)
	if want > before {
		log.Warn("configured memory bound is above the process's memory limit (GOMEMLIMIT); keeping the lower limit",
			"key", key, "configured_limit_bytes", want, "limit_bytes", before)
		return before
	}
	debug.SetMemoryLimit(want)
	return before
}
