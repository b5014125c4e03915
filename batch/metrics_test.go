package batch

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRunResult(t *testing.T) {
	f := func(res *Result, err error, want string) {
		t.Helper()
		if got := RunResult(res, err); got != want {
			t.Errorf("RunResult(%v, %v) = %s, want %s", res, err, got, want)
		}
	}
	f(&Result{}, nil, ResultSuccess)
	f(&Result{UpToDate: true}, nil, ResultUpToDate)
	f(nil, fmt.Errorf("scan: %w", ErrNoEvents), ResultNoEvents)
	f(nil, fmt.Errorf("scan: %w", context.Canceled), ResultCanceled)
	f(nil, errors.New("disk full"), ResultError)
}
