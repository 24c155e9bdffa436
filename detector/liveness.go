package detector

import (
	"sync"
	"time"
)

// Worker is the progress report of one long-lived worker of the detector
// (the health loop, a watcher, the counter poller, the probe rounds, a
// prober's reader).
type Worker struct {
	Name string
	// LastProgress is when the worker last finished a piece of work or
	// started the one it is busy with; zero before it first ran.
	LastProgress time.Time
	// Busy says the worker is inside a piece of work (a kernel call, an
	// event, a probe round) rather than waiting for one. A worker that
	// waits is never stuck; a busy one whose LastProgress is old is.
	Busy bool
}

// Stalled says whether w has been busy with one piece of work for longer
// than limit at now: what /healthz and the watchdog fail on.
func (w Worker) Stalled(now time.Time, limit time.Duration) bool {
	return w.Busy && now.Sub(w.LastProgress) > limit
}

// LivenessReporter is implemented by a Prober with workers of its own
// (SocketProber's readers); Detector.Liveness includes them.
type LivenessReporter interface {
	Liveness() []Worker
}

// beat is one worker's progress. A nil *beat records nothing, so workers
// built by tests without one still run.
type beat struct {
	name string
	mu   sync.Mutex
	at   time.Time
	busy bool
}

func newBeat(name string) *beat { return &beat{name: name} }

// begin says the worker starts a piece of work at now.
func (b *beat) begin(now time.Time) { b.set(now, true) }

// idle says the worker finished its work at now and waits for more.
func (b *beat) idle(now time.Time) { b.set(now, false) }

func (b *beat) set(now time.Time, busy bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.at, b.busy = now, busy
	b.mu.Unlock()
}

func (b *beat) report() Worker {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Worker{Name: b.name, LastProgress: b.at, Busy: b.busy}
}

// roundBeats is the progress of the probe rounds: short-lived goroutines
// that are one worker together. It is busy while any round runs, since
// the oldest round still running started: a round wedged in a prober
// that never returns shows as a stalled "probe rounds" worker.
type roundBeats struct {
	mu      sync.Mutex
	next    uint64
	running map[uint64]time.Time
	last    time.Time // when the last round ended
}

func (r *roundBeats) start(now time.Time) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[uint64]time.Time{}
	}
	r.next++
	r.running[r.next] = now
	return r.next
}

func (r *roundBeats) end(id uint64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, id)
	r.last = now
}

func (r *roundBeats) report() Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := Worker{Name: "probe rounds", LastProgress: r.last}
	for _, at := range r.running {
		if !w.Busy || at.Before(w.LastProgress) {
			w.LastProgress, w.Busy = at, true
		}
	}
	return w
}
