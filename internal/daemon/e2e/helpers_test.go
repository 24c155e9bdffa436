package e2e

import (
	"encoding/json"
	"errors"
	"time"
)

// sameTime compares the wall-clock "since" of a gateway across status
// reads: the detector derives it from the monotonic clock, so it may move
// by a few microseconds between reads without any transition.
func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Millisecond && d < time.Millisecond
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }
