package netlab

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const ms = time.Millisecond

// flow builds a flow sending every 4 ms with replies 1 ms later, except
// for the sequence numbers in lost.
func flow(n int, lost ...int) *Flow {
	f := &Flow{Sent: make([]time.Duration, n), Recv: make([]time.Duration, n), Via: make([]uint8, n)}
	drop := map[int]bool{}
	for _, s := range lost {
		drop[s] = true
	}
	for i := range f.Sent {
		f.Sent[i] = time.Duration(i) * 4 * ms
		f.Recv[i] = -1
		if !drop[i] {
			f.Recv[i] = f.Sent[i] + ms
			f.Via[i] = 1
		}
	}
	return f
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestLongestGap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		flows    []*Flow
		from, to time.Duration
		want     Gap
	}{
		{
			name:  "no loss is no outage",
			flows: []*Flow{flow(100)},
			from:  0, to: time.Second,
			want: Gap{Valid: true, Resumed: -1},
		},
		{
			name:  "one lost packet is two intervals",
			flows: []*Flow{flow(100, 10)},
			from:  0, to: time.Second,
			want: Gap{From: 36 * ms, To: 44 * ms, Len: 8 * ms, RecvLen: 8 * ms, Resumed: 45 * ms, Lost: 1, Valid: true},
		},
		{
			name:  "the longest run over every flow wins",
			flows: []*Flow{flow(100, span(10, 15)...), flow(100, span(50, 70)...)},
			from:  0, to: time.Second,
			want: Gap{Flow: 1, From: 196 * ms, To: 280 * ms, Len: 84 * ms, RecvLen: 84 * ms, Resumed: 281 * ms, Lost: 20, Valid: true},
		},
		{
			name:  "never answered again is open",
			flows: []*Flow{flow(100, span(90, 100)...)},
			from:  0, to: time.Second,
			want: Gap{From: 356 * ms, To: 396 * ms, Len: 40 * ms, RecvLen: 40 * ms, Resumed: -1, Lost: 10, Open: true, Valid: true},
		},
		{
			name:  "the window limits what counts",
			flows: []*Flow{flow(100, span(10, 20)...)},
			from:  100 * ms, to: time.Second,
			want: Gap{Valid: true, Resumed: -1},
		},
		{
			name:  "nothing sent in the window",
			flows: []*Flow{flow(10)},
			from:  time.Second, to: 2 * time.Second,
			want: Gap{Resumed: -1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Traffic{Flows: tc.flows}
			if diff := cmp.Diff(tc.want, tr.LongestGap(tc.from, tc.to)); diff != "" {
				t.Errorf("LongestGap (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDelivered(t *testing.T) {
	a := flow(10, 3, 4)
	b := flow(10)
	for i := range b.Via {
		b.Via[i] = 2
	}
	tr := &Traffic{Flows: []*Flow{a, b}, Ifaces: []string{"eth1", "eth2"}}
	want := Delivery{Sent: 20, Lost: 2, Via: map[string]int{"eth1": 8, "eth2": 10}, MaxRTT: ms}
	if diff := cmp.Diff(want, tr.Delivered(0, time.Second)); diff != "" {
		t.Errorf("Delivered (-want +got):\n%s", diff)
	}
	if got := tr.FirstVia("eth2", 10*ms); got != 13*ms {
		t.Errorf("FirstVia(eth2, 10ms) = %v, want 13ms", got)
	}
	if got := tr.FirstVia("eth3", 0); got != -1 {
		t.Errorf("FirstVia(eth3) = %v, want -1", got)
	}
}

func TestParseCounters(t *testing.T) {
	out := `table netdev uplcount {
	counter echo4 {
		packets 12 bytes 1008
	}
	counter echo6 {
		packets 0 bytes 0
	}
	counter arpreq {
		packets 3 bytes 126
	}
}
`
	got, err := parseCounters(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Counts{Echo4: 12, ARP: 3}, got); diff != "" {
		t.Errorf("parseCounters (-want +got):\n%s", diff)
	}
	if _, err := parseCounters("table netdev uplcount {\n}\n"); err == nil {
		t.Error("parseCounters accepted output without counters")
	}
}
