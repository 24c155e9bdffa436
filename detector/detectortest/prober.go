package detectortest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/uplinkd/uplinkd/detector"
)

// ErrNoReply is a lost probe of the fake Prober.
var ErrNoReply = errors.New("no reply")

// Prober is a fake detector.Prober: a probe through an interface set
// alive is answered in a millisecond, others are lost after the target's
// timeout. Every probe is recorded. Block wedges it.
type Prober struct {
	mu     sync.Mutex
	alive  map[string]bool // by Target.Iface
	probes []detector.Target
	block  chan struct{}
}

var _ detector.Prober = (*Prober)(nil)

// NewProber returns a prober that answers nothing.
func NewProber() *Prober { return &Prober{alive: map[string]bool{}} }

// Set makes probes through iface answered (alive) or lost.
func (p *Prober) Set(iface string, alive bool) {
	p.mu.Lock()
	p.alive[iface] = alive
	p.mu.Unlock()
}

// Probes returns every probe sent so far.
func (p *Prober) Probes() []detector.Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]detector.Target(nil), p.probes...)
}

// Count returns how many probes went through iface ("" for all).
func (p *Prober) Count(iface string) int {
	n := 0
	for _, t := range p.Probes() {
		if iface == "" || t.Iface == iface {
			n++
		}
	}
	return n
}

// Last returns the last probe sent (zero if none).
func (p *Prober) Last() detector.Target {
	ps := p.Probes()
	if len(ps) == 0 {
		return detector.Target{}
	}
	return ps[len(ps)-1]
}

// Block makes every probe hang, past its timeout and its context, until
// release is called: a wedged prober. release is idempotent.
func (p *Prober) Block() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.block = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.block == ch {
				p.block = nil
			}
			p.mu.Unlock()
			close(ch)
		})
	}
}

func (p *Prober) Probe(ctx context.Context, t detector.Target) (time.Duration, error) {
	p.mu.Lock()
	p.probes = append(p.probes, t)
	alive, block := p.alive[t.Iface], p.block
	p.mu.Unlock()
	if block != nil {
		<-block
	}
	if alive {
		return time.Millisecond, nil
	}
	timer := time.NewTimer(t.Timeout)
	defer timer.Stop()
	select {
	case <-timer.C:
		return 0, ErrNoReply
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *Prober) Close() error { return nil }
