package e2e

import (
	"encoding/json"
	"errors"
	"time"
)

// sameTime compares the wall-clock "since" of a gateway across status
// reads: the detector derives it from the monotonic clock, so it may move
// between reads without any transition: by microseconds, and by ~10 ms
// under the race detector on a busy machine. A transition would move it by
// seconds (to the reload), so 50 ms keeps the test's meaning.
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -50*time.Millisecond && d < 50*time.Millisecond
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }
