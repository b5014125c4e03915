package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The store flags of dev and bench serve reach the configuration that
// --check-config validates.
func TestStoreFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"bench", "serve", "--check-config", "--store", "redis", "--redis-addr", "127.0.0.1:6390"}, true},
		{[]string{"bench", "serve", "--check-config", "--store", "clickhouse", "--session-store", "redis"}, true},
		{[]string{"bench", "serve", "--check-config", "--store", "memory", "--session-store", "redis"}, false},
		{[]string{"bench", "serve", "--check-config", "--store", "redis", "--redis-addr", "no-port"}, false},
		{[]string{"dev", "--check-config", "--store", "redis", "--redis-addr", "127.0.0.1:6390"}, true},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if (code == 0) != tc.ok {
			t.Errorf("%s: exit %d, want ok=%v; stderr %s", strings.Join(tc.args, " "), code, tc.ok, stderr.String())
		}
	}
}
