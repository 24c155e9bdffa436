package detectortest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector"
)

// Recorded is a transition with its monotonic arrival.
type Recorded struct {
	detector.Transition
	Mono time.Time
}

// Recorder keeps every transition a running detector reported.
type Recorder struct {
	mu  sync.Mutex
	all []Recorded
}

// List returns the transitions so far.
func (r *Recorder) List() []Recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Recorded(nil), r.all...)
}

// First returns the first transition of gw to state at or after since.
func (r *Recorder) First(gw string, to detector.State, since time.Time) (Recorded, bool) {
	for _, t := range r.List() {
		if t.Gateway == gw && t.To == to && !t.Mono.Before(since) {
			return t, true
		}
	}
	return Recorded{}, false
}

// Last returns the latest transition of gw, if any.
func (r *Recorder) Last(gw string) (Recorded, bool) {
	all := r.List()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Gateway == gw {
			return all[i], true
		}
	}
	return Recorded{}, false
}

// Count counts the transitions of gw to state in [from, until); a zero
// until is open.
func (r *Recorder) Count(gw string, to detector.State, from, until time.Time) int {
	n := 0
	for _, t := range r.List() {
		if t.Gateway == gw && t.To == to && !t.Mono.Before(from) && (until.IsZero() || t.Mono.Before(until)) {
			n++
		}
	}
	return n
}

// Run runs d until the test ends, recording its transitions; the
// detector is closed at cleanup.
func Run(t testing.TB, d *detector.Detector) *Recorder {
	return run(t, d, true)
}

// RunUndrained runs d until the test ends without reading Transitions:
// once its buffer is full the health loop blocks, as behind a daemon
// that stopped draining it.
func RunUndrained(t testing.TB, d *detector.Detector) {
	run(t, d, false)
}

func run(t testing.TB, d *detector.Detector, drain bool) *Recorder {
	rec := &Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopRec := make(chan struct{})
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		if !drain {
			<-stopRec
			return
		}
		for {
			select {
			case tr := <-d.Transitions():
				rec.mu.Lock()
				rec.all = append(rec.all, Recorded{tr, time.Now()})
				rec.mu.Unlock()
			case <-stopRec:
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		close(stopRec)
		<-recDone
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rec
}

// WaitFor polls cond every 10 ms until it holds, or fails the test after
// timeout.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
