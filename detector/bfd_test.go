package detector

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
)

var (
	bfdUp   = Event{Kind: EvBFD, BFD: BFDUp, Detail: "bfd session up"}
	bfdDown = Event{Kind: EvBFD, BFD: BFDDown, Detail: "bfd session down (control-detection-time-expired)"}
	bfdNone = Event{Kind: EvBFD, BFD: BFDNone}
)

// TestMachineBFD: a session is evidence like the others: Up is positive
// advice, Down negative advice that makes the gateway down at once (as
// carrier loss does) or, with down = "check", starts a probe check.
func TestMachineBFD(t *testing.T) {
	tests := []struct {
		name  string
		down  string
		steps []step
		want  []tr
	}{
		{
			name:  "session up at start is enough",
			down:  policy.BFDDownImmediate,
			steps: []step{{0, bfdUp}},
			want:  []tr{{0, Unknown, Up, CauseBFD, "bfd session up"}},
		},
		{
			name:  "down at once, up when the session returns",
			down:  policy.BFDDownImmediate,
			steps: []step{{0, bfdUp}, {time.Second, bfdDown}, {2 * time.Second, bfdUp}},
			want: []tr{
				{0, Unknown, Up, CauseBFD, "bfd session up"},
				{time.Second, Up, Down, CauseBFD, "bfd session down (control-detection-time-expired)"},
				{2 * time.Second, Down, Up, CauseBFD, "bfd session up"},
			},
		},
		{
			name:  "check: a Down starts probes, which decide",
			down:  policy.BFDDownCheck,
			steps: []step{{0, bfdUp}, {time.Second, bfdDown}, {time.Second + 20*ms, lost}, {time.Second + 40*ms, lost}, {time.Second + 60*ms, lost}},
			want: []tr{
				{0, Unknown, Up, CauseBFD, "bfd session up"},
				{time.Second + 20*ms, Up, Suspect, CauseProbe, "1 probes lost in a row, last: probe lost (gateway 198.18.1.1: no reply)"},
				{time.Second + 60*ms, Suspect, Down, CauseProbe, "3 probes lost"},
			},
		},
		{
			name:  "check: probes answering keep it up",
			down:  policy.BFDDownCheck,
			steps: []step{{0, bfdUp}, {time.Second, bfdDown}, {time.Second + 20*ms, good}},
			want:  []tr{{0, Unknown, Up, CauseBFD, "bfd session up"}},
		},
		{
			name:  "a BFD Up does not overrule the probes' down",
			down:  policy.BFDDownImmediate,
			steps: []step{{0, good}, {ms, lost}, {2 * ms, lost}, {3 * ms, lost}, {time.Second, bfdUp}},
			want: []tr{
				{0, Unknown, Up, CauseStart, "probe answered in 2ms"},
				{2 * ms, Up, Suspect, CauseProbe, "2 probes lost in a row, last: probe lost (gateway 198.18.1.1: no reply)"},
				{3 * ms, Suspect, Down, CauseProbe, "3 probes lost"},
			},
		},
		{
			name:  "the peer disabling BFD is no verdict",
			down:  policy.BFDDownImmediate,
			steps: []step{{0, bfdUp}, {time.Second, bfdNone}},
			want:  []tr{{0, Unknown, Up, CauseBFD, "bfd session up"}},
		},
		{
			name:  "no session verdict without carrier",
			down:  policy.BFDDownImmediate,
			steps: []step{{0, bfdUp}, {ms, carrierN}, {2 * ms, bfdDown}},
			want: []tr{
				{0, Unknown, Up, CauseBFD, "bfd session up"},
				{ms, Up, Down, CauseCarrier, "carrier lost on eth1"},
			},
		},
	}
	for _, tt := range tests {
		g := testGateway(nil)
		g.BFD = &policy.BFD{Down: tt.down}
		m := NewMachine(g, t0)
		if diff := cmp.Diff(tt.want, run(m, tt.steps)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}
