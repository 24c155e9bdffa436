package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPackets(t *testing.T) {
	for _, tc := range []struct {
		n    int
		noun string
		want string
	}{
		{1, "packet lost", "1 packet lost"},
		{3, "packet lost", "3 packets lost"},
		{0, "packet lost", "0 packets lost"},
		{1, "lost packet", "1 lost packet"},
		{57, "lost packet", "57 lost packets"},
	} {
		if got := packets(tc.n, tc.noun); got != tc.want {
			t.Errorf("packets(%d, %q) = %q, want %q", tc.n, tc.noun, got, tc.want)
		}
	}
}

func TestOffset(t *testing.T) {
	origin := time.Unix(1000, 0)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "+0 ms"},
		{231 * time.Millisecond, "+231 ms"},
		{-1510 * time.Millisecond, "-1.51 s"},
		{2970 * time.Millisecond, "+2.97 s"},
		{52240 * time.Millisecond, "+52.2 s"},
	} {
		if got := offset(origin.Add(tc.d), origin); got != tc.want {
			t.Errorf("offset(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP uplinkd_probes_sent_total Probes sent.
# TYPE uplinkd_probes_sent_total counter
uplinkd_probes_sent_total{gateway="gw1",kind="icmp"} 12
uplinkd_probes_sent_total{gateway="gw1",kind="neigh"} 3
uplinkd_evidence_events_total{gateway="gw1",polarity="negative",source="traffic"} 2
uplinkd_build_info{commit="x,y",goversion="go1.26",version="v"} 1
uplinkd_resyncs_total 4
`
	got := counterKeys(parseMetrics(text))
	want := map[string]float64{
		"probe sent|gw1|icmp":           12,
		"probe sent|gw1|neigh":          3,
		"evidence|gw1|traffic negative": 2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counterKeys(parseMetrics) (-want +got):\n%s", diff)
	}
	ss := parseMetrics(text)
	if len(ss) != 5 || ss[3].labels["commit"] != "x,y" || ss[4].name != "uplinkd_resyncs_total" || ss[4].value != 4 {
		t.Errorf("parseMetrics = %+v", ss)
	}
}

func TestSummary(t *testing.T) {
	runs := []runResult{
		{Mode: "uplinkd", Fault: "blackhole", Rep: 1, Recovered: true, OutageMs: 230, SwitchedBack: true, SwitchbackAfterS: 3, RouteChanges: 1},
		{Mode: "uplinkd", Fault: "blackhole", Rep: 2, Recovered: true, OutageMs: 250, SwitchedBack: true, SwitchbackAfterS: 2, RouteChanges: 1},
		{Mode: "uplinkd", Fault: "blackhole", Rep: 3, Recovered: true, OutageMs: 240, SwitchedBack: true, SwitchbackAfterS: 4, RouteChanges: 1},
		{Mode: "kernel", Fault: "blackhole", Rep: 1, OutageMs: 60000, SwitchedBack: true},
		{Mode: "kernel", Fault: "blackhole", Rep: 2, Recovered: true, OutageMs: 30000},
	}
	rep := newReport(runs, nil, benchOpts{window: 20 * time.Second, kernelWindow: time.Minute}, time.Minute)
	if len(rep.Summary) != 2 {
		t.Fatalf("%d summaries, want 2", len(rep.Summary))
	}
	u, k := rep.Summary[0], rep.Summary[1]
	if u.MedianOutageMs != 240 || u.WorstOutageMs != 250 || u.MedianNever || u.MedianSwitchbackS != 3 {
		t.Errorf("uplinkd summary %+v", u)
	}
	if diff := cmp.Diff([]int{1, 1, 1}, u.RouteChanges); diff != "" {
		t.Errorf("route changes (-want +got):\n%s", diff)
	}
	// One of two kernel runs never recovered: the median of {30 s, ∞} is ∞.
	if !k.WorstNever || !k.MedianNever || k.Recovered != 1 || k.WindowS != 60 {
		t.Errorf("kernel summary %+v", k)
	}
	if got := outageText(k.MedianOutageMs, k.MedianNever, k.WindowS); got != "never (>60 s)" {
		t.Errorf("outageText = %q", got)
	}
}
