package detector

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPacer(t *testing.T) {
	type poll struct {
		at   time.Duration
		sent uint64
	}
	tests := []struct {
		name  string
		polls []poll
		want  []time.Duration
	}{
		{
			name:  "nothing sent: quiet",
			polls: []poll{{0, 0}, {200 * ms, 0}},
			want:  []time.Duration{quietPollEvery, quietPollEvery},
		},
		{
			name:  "stray packets seconds apart stay quiet",
			polls: []poll{{0, 1}, {200 * ms, 0}, {3 * time.Second, 1}, {6 * time.Second, 1}, {6200 * ms, 1}},
			want:  []time.Duration{quietPollEvery, quietPollEvery, quietPollEvery, quietPollEvery, quietPollEvery},
		},
		{
			name:  "a flow is polled at full pace, then slower as it stops",
			polls: []poll{{0, 5}, {10 * ms, 2}, {20 * ms, 0}, {1010 * ms, 0}, {1100 * ms, 0}, {5010 * ms, 0}, {5100 * ms, 0}},
			want:  []time.Duration{pollEvery, pollEvery, pollEvery, pollEvery, idlePollEvery, idlePollEvery, quietPollEvery},
		},
		{
			name:  "a slow flow: three packets within a second",
			polls: []poll{{0, 1}, {400 * ms, 1}, {800 * ms, 1}, {810 * ms, 0}},
			want:  []time.Duration{quietPollEvery, quietPollEvery, pollEvery, pollEvery},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p pacer
			var got []time.Duration
			for _, pl := range tc.polls {
				got = append(got, p.next(t0.Add(pl.at), pl.sent))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("periods (-want +got):\n%s", diff)
			}
		})
	}
}
