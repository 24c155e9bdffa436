package detector_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/detector/detectortest"
)

// TestLiveness wedges one worker at a time with a fake that blocks and
// checks that Liveness shows exactly that worker stalled: busy, with no
// progress since before the clock jumped a minute ahead, while the
// others go on (or wait, which is never a stall).
func TestLiveness(t *testing.T) {
	const limit = 30 * time.Second
	tests := []struct {
		name      string
		before    func(k *detectortest.Kernel, p *detectortest.Prober) (release func()) // before Run
		after     func(k *detectortest.Kernel, p *detectortest.Prober) (release func()) // once both are up
		undrained bool
		want      []string
	}{
		{name: "healthy: nothing stalled"},
		{name: "counter read", after: func(k *detectortest.Kernel, _ *detectortest.Prober) func() {
			return k.Block(detectortest.OpCounters)
		}, want: []string{"traffic poller"}},
		{name: "link read", after: func(k *detectortest.Kernel, _ *detectortest.Prober) func() {
			return k.Block(detectortest.OpLink) // the poller reads links by name every second
		}, want: []string{"traffic poller"}},
		{name: "link mode read", before: func(k *detectortest.Kernel, _ *detectortest.Prober) func() {
			return k.Block(detectortest.OpLinkMode)
		}, want: []string{"link mode poller"}},
		{name: "neighbour subscription", before: func(k *detectortest.Kernel, _ *detectortest.Prober) func() {
			return k.Block(detectortest.OpSubscribeNeighbours)
		}, want: []string{"neighbour watcher"}},
		{name: "link subscription", before: func(k *detectortest.Kernel, _ *detectortest.Prober) func() {
			return k.Block(detectortest.OpSubscribeLinks)
		}, want: []string{"link watcher"}},
		{name: "prober", before: func(_ *detectortest.Kernel, p *detectortest.Prober) func() {
			return p.Block()
		}, want: []string{"probe rounds"}},
		{name: "undrained transitions", undrained: true, want: []string{"health loop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var offset atomic.Int64
			clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			k, p := detectortest.NewKernel(), detectortest.NewProber()
			k.AddLink("eth1", 4, "198.18.1.2/24")
			k.AddLink("eth2", 5, "198.18.2.2/24")
			p.Set("eth1", true)
			p.Set("eth2", true)
			var releases []func()
			if tc.before != nil {
				releases = append(releases, tc.before(k, p))
			}
			d, err := detector.New(detector.Config{Policy: mustPolicy(t, twoGateways), Logger: testLogger(t), Kernel: k, Prober: p,
				Now: clock, TransitionBuffer: 1})
			if err != nil {
				t.Fatal(err)
			}
			if tc.undrained {
				detectortest.RunUndrained(t, d)
			} else {
				rec := detectortest.Run(t, d)
				if tc.before == nil {
					detectortest.WaitFor(t, "both up", 5*time.Second, func() bool {
						_, ok1 := rec.First("gw1", detector.Up, time.Time{})
						_, ok2 := rec.First("gw2", detector.Up, time.Time{})
						return ok1 && ok2
					})
				}
			}
			// Released before the detector stops (cleanups run last first),
			// so that Close does not wait on a call that never returns.
			t.Cleanup(func() {
				for _, r := range releases {
					r()
				}
			})
			if tc.after != nil {
				releases = append(releases, tc.after(k, p))
			}
			time.Sleep(1500 * time.Millisecond) // every wedge has been hit
			offset.Store(int64(time.Minute))
			var got []string
			detectortest.WaitFor(t, "the wedged workers alone stalled", 5*time.Second, func() bool {
				got = stalled(d.Liveness(), clock(), limit)
				return slices.Equal(got, tc.want)
			})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("stalled workers (-want +got):\n%s", diff)
			}
		})
	}
}

func stalled(ws []detector.Worker, now time.Time, limit time.Duration) []string {
	var out []string
	for _, w := range ws {
		if w.Stalled(now, limit) {
			out = append(out, w.Name)
		}
	}
	return out
}

// TestLivenessNames: every worker the detector runs is reported, by name.
func TestLivenessNames(t *testing.T) {
	k, p := detectortest.NewKernel(), detectortest.NewProber()
	d, err := detector.New(detector.Config{Policy: mustPolicy(t, twoGateways), Kernel: k, Prober: p})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for _, w := range d.Liveness() {
		names = append(names, w.Name)
	}
	want := []string{"health loop", "link watcher", "neighbour watcher", "traffic poller", "link mode poller", "probe rounds"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("workers (-want +got):\n%s", diff)
	}
}
