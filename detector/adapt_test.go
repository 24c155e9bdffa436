package detector

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEstimatorBound(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		k       float64
		minN    int
		want    time.Duration
	}{
		{"no samples: the ceiling", nil, 3, 1, 100 * ms},
		{"too few samples: the ceiling", []time.Duration{10 * ms}, 1, 4, 100 * ms},
		{"lan rtt: the floor", []time.Duration{200 * time.Microsecond, 250 * time.Microsecond}, 3, 1, 5 * ms},
		// 10ms: srtt 10ms, rttvar 5ms: 3 × 30ms = 90ms (k = 3).
		{"one 10ms sample", []time.Duration{10 * ms}, 3, 1, 90 * ms},
		{"slow path: the ceiling", []time.Duration{80 * ms, 90 * ms}, 3, 1, 100 * ms},
		// steady 10ms gaps: rttvar decays from 5ms to 5×(3/4)^4 ≈ 1.58ms: 10 + 4 × 1.58.
		{"steady gaps", []time.Duration{10 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms}, 1, 4, 16328124},
		{"a jittery flow rises above the floor", []time.Duration{10 * ms, 40 * ms, 10 * ms, 40 * ms}, 1, 4, 71464841},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e estimator
			for _, s := range tc.samples {
				e.add(s)
			}
			if diff := cmp.Diff(tc.want, e.bound(tc.k, tc.minN, 5*ms, 100*ms)); diff != "" {
				t.Errorf("bound (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHoldoffNext(t *testing.T) {
	var got []time.Duration
	cur := time.Duration(0)
	for range 9 {
		cur = holdoffNext(cur, time.Second, time.Minute)
		got = append(got, cur)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute, time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hold-offs (-want +got):\n%s", diff)
	}
	if got := holdoffNext(time.Second, time.Second, time.Second); got != time.Second {
		t.Errorf("fixed hold-off: got %s, want 1s", got)
	}
}

func TestCheckSpacing(t *testing.T) {
	for _, tc := range []struct{ timeout, fast, want time.Duration }{
		{20 * ms, 20 * ms, 10 * ms},
		{100 * ms, 20 * ms, 20 * ms},
		{1 * ms, 20 * ms, 1 * ms},
		{40 * ms, 0, 20 * ms},
	} {
		if got := checkSpacing(tc.timeout, tc.fast); got != tc.want {
			t.Errorf("checkSpacing(%s, %s) = %s, want %s", tc.timeout, tc.fast, got, tc.want)
		}
	}
}
