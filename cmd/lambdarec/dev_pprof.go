package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/lambdarec/lambdarec/speed"
)

// servePprof serves Go's runtime profiles (net/http/pprof, with block and
// mutex profiling on) at addr until stop is called: `dev --pprof`, for
// finding where the one process spends its time. Off unless asked for: the
// profiles show the process's internals and block/mutex sampling costs a
// little.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen on %s: %w", addr, err)
	}
	runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds())) // a sample per 100 µs blocked
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// traceSpeedLoop writes the speed layer's loop trace (speed.WriteLoopTrace)
// to path until stop is called: `dev --speed-trace`, for seeing whether the
// layer waits for records, for its view writes or for the CPU.
func traceSpeedLoop(path string, log *slog.Logger) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("speed loop trace: %w", err)
	}
	end := speed.WriteLoopTrace(f)
	log.Info("tracing the speed layer's loop", "file", path)
	return func() {
		if err := errors.Join(end(), f.Close()); err != nil {
			log.Warn("speed loop trace", "file", path, "err", err)
		}
	}, nil
}
