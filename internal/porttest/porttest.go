// Package porttest owns the loopback ports that tests start servers on (a
// child process, a server restarted on the same port, a port that must stay
// closed for a while): ports free when drawn, taken from below Linux's
// ephemeral range.
//
// Asking the kernel for ":0" and closing the listener gives a port of the
// ephemeral range (32768–60999 by default), which the kernel also hands out
// as the local port of outgoing connections: in the seconds before the test
// binds it again, any connection made by the tests running beside can take
// it, and the bind then fails (EADDRINUSE). A port drawn below that range is
// only ever taken by a listener.
package porttest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// The ports drawn: count of them from first, below the ephemeral range.
const (
	first = 20000
	count = 12000
)

// Free returns a loopback port nobody listens on now, in [20000, 32000).
func Free() (int, error) {
	for range 100 {
		p := first + rand.IntN(count)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("close the listener on port %d: %w", p, err)
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in [%d, %d) after 100 draws", first, first+count)
}

// Port is Free for a test: an error fails it.
func Port(t testing.TB) int {
	t.Helper()
	p, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Addr returns "127.0.0.1:<Port>".
func Addr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(t))
}
