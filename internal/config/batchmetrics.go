package config

import (
	"fmt"
	"net"
)

// validateBatchMetrics checks batch.metrics_addr: empty (off, the default)
// or host:port.
func validateBatchMetrics(b Batch) []error {
	if b.MetricsAddr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(b.MetricsAddr); err != nil {
		return []error{fmt.Errorf("batch.metrics_addr: %q is not host:port: %w", b.MetricsAddr, err)}
	}
	return nil
}
