package porttest

import (
	"net"
	"strconv"
	"testing"
)

// The ports drawn are below the ephemeral range, free, and can be bound.
func TestPort(t *testing.T) {
	for range 20 {
		p := Port(t)
		if p < first || p >= first+count {
			t.Fatalf("port %d outside [%d, %d)", p, first, first+count)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("listen on the port drawn: %v", err)
		}
		l.Close()
	}
	if a := Addr(t); len(a) < len("127.0.0.1:20000") {
		t.Fatalf("Addr = %q", a)
	}
}
