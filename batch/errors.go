package batch

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrClosed is returned by [Batcher.Do] once [Batcher.Close] has begun,
	// including to callers that were blocked waiting for room in the queue:
	// their requests were never accepted.
	ErrClosed = errors.New("batch: batcher closed")

	// ErrFull is returned by [Batcher.Do] when the queue is full and
	// [Config.FailFast] is set.
	ErrFull = errors.New("batch: queue full")

	// ErrResultCount is wrapped by the error every caller of a batch gets when
	// the batch function returned a number of results (or of [ItemErrors])
	// different from the number of requests it was given.
	ErrResultCount = errors.New("batch: batch function returned the wrong number of results")

	// ErrPanic is wrapped by the error every caller of a batch gets when the
	// batch function panicked. The message carries the panic value.
	ErrPanic = errors.New("batch: batch function panicked")

	// ErrConfig is wrapped by the error [New] returns for an invalid
	// [Config] or a nil batch function.
	ErrConfig = errors.New("batch: invalid config")
)

// ItemErrors is an error a batch function returns to fail some of its
// requests and not others: ItemErrors[i] is the error for reqs[i], nil where
// the request succeeded. Its length must equal the number of requests. The
// batch function returns it directly (or wrapped) as its error, together
// with a result slice of the same length, or nil when no request succeeded.
// An empty ItemErrors means that no request failed, so a function may return
// a nil ItemErrors variable as its error when all went well.
//
// Each caller gets its own entry: the matching result when the entry is nil,
// the entry itself, unwrapped, otherwise.
type ItemErrors []error

// Error lists the failed requests by index.
func (e ItemErrors) Error() string {
	var sb strings.Builder
	sb.WriteString("batch: failed requests:")
	failed := 0
	for i, err := range e {
		if err != nil {
			fmt.Fprintf(&sb, " [%d] %v;", i, err)
			failed++
		}
	}
	if failed == 0 {
		sb.WriteString(" none")
	}
	return strings.TrimSuffix(sb.String(), ";")
}
