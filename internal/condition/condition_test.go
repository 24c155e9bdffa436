package condition

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/policy"
)

// twoISPs is the gateways and group every test policy here starts with.
const twoISPs = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"

[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"

[group.wan]
gateways = ["isp1", "isp2"]
`

const testPolicy = twoISPs + `
[condition.claim]
all = ["address 198.18.0.100 on eth0", "gateway isp1 up", "condition remote"]
hold_up = "2s"

[condition.remote]
any = ["file /run/t/remote", "not link eth9 up"]
hold_down = "1s"

[condition.two]
at_least = 2
of = ["gateway isp1 up", "gateway isp2 up", "link eth1 up"]

[condition.wan-down]
all = ["group wan down"]

[condition.wan-up]
all = ["group wan up"]

[condition.degraded]
any = ["gateway isp2 degraded"]
`

func mustPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("t.toml", []byte(src), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var vip = Addr{"eth0", netip.MustParseAddr("198.18.0.100")}

// step is one Observe: facts changed by edit at offset at from the start.
type step struct {
	at       time.Duration
	edit     func(f *Facts)
	want     []string // "+name" up, "-name" down
	deadline time.Duration
}

func TestObserve(t *testing.T) {
	base := func() Facts {
		return Facts{Gateways: map[string]Health{}, Links: map[string]bool{"eth9": true}, Addrs: map[Addr]bool{}, Files: map[string]bool{}}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"nothing known: all down, no change", []step{
			{at: 0, edit: func(*Facts) {}},
		}},
		{"unknown gateways are neither up nor down", []step{
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up }, want: []string{"+wan-up"}},
			{at: time.Second, edit: func(f *Facts) { f.Gateways["isp1"] = Down }, want: []string{"-wan-up"}},
			{at: 2 * time.Second, edit: func(f *Facts) { f.Gateways["isp2"] = Down }, want: []string{"+wan-down"}},
		}},
		{"at_least counts terms; degraded is up", []step{
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up; f.Links["eth1"] = true }, want: []string{"+two", "+wan-up"}},
			{at: 1, edit: func(f *Facts) { f.Gateways["isp2"] = Degraded }, want: []string{"+degraded"}},
			{at: 2, edit: func(f *Facts) { f.Links["eth1"] = false }},
			{at: 3, edit: func(f *Facts) { f.Gateways["isp1"] = Down }, want: []string{"-two"}},
		}},
		{"hold_up delays the claim; a chain resolves in one Observe", []step{
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up; f.Addrs[vip] = true; f.Links["eth9"] = false },
				want: []string{"+remote", "+wan-up"}, deadline: 2 * time.Second},
			{at: 1500 * time.Millisecond, edit: func(*Facts) {}, deadline: 2 * time.Second},
			{at: 2 * time.Second, edit: func(*Facts) {}, want: []string{"+claim"}},
		}},
		{"a failure inside hold_up restarts the wait", []step{
			// remote goes up at once (hold_up 0): claim's terms hold from 0.
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up; f.Addrs[vip] = true; f.Files["/run/t/remote"] = true },
				want: []string{"+remote", "+wan-up"}, deadline: 2 * time.Second},
			{at: time.Second, edit: func(f *Facts) { delete(f.Addrs, vip) }},
			{at: 1500 * time.Millisecond, edit: func(f *Facts) { f.Addrs[vip] = true }, deadline: 3500 * time.Millisecond},
			{at: 3499 * time.Millisecond, edit: func(*Facts) {}, deadline: 3500 * time.Millisecond},
			{at: 3500 * time.Millisecond, edit: func(*Facts) {}, want: []string{"+claim"}},
		}},
		{"hold_down delays a dependency, and the dependent follows it", []step{
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up; f.Addrs[vip] = true; f.Files["/run/t/remote"] = true },
				want: []string{"+remote", "+wan-up"}, deadline: 2 * time.Second},
			{at: 2 * time.Second, edit: func(*Facts) {}, want: []string{"+claim"}},
			{at: 3 * time.Second, edit: func(f *Facts) { f.Files["/run/t/remote"] = false }, deadline: 4 * time.Second},
			{at: 4 * time.Second, edit: func(*Facts) {}, want: []string{"-remote", "-claim"}},
		}},
		{"a claim is released at once: hold_down 0", []step{
			{at: 0, edit: func(f *Facts) { f.Gateways["isp1"] = Up; f.Addrs[vip] = true; f.Links["eth9"] = false },
				want: []string{"+remote", "+wan-up"}, deadline: 2 * time.Second},
			{at: 2 * time.Second, edit: func(*Facts) {}, want: []string{"+claim"}},
			{at: 5 * time.Second, edit: func(f *Facts) { delete(f.Addrs, vip) }, want: []string{"-claim"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New(mustPolicy(t, testPolicy))
			t0 := time.Unix(1_000_000, 0)
			f := base()
			for i, s := range tc.steps {
				s.edit(&f)
				var got []string
				for _, c := range e.Observe(f, t0.Add(s.at)) {
					sign := "-"
					if c.Up {
						sign = "+"
					}
					got = append(got, sign+c.Name)
				}
				if diff := cmp.Diff(s.want, got); diff != "" {
					t.Errorf("step %d (at %s): changes (-want +got):\n%s", i, s.at, diff)
				}
				var gotDL time.Duration
				if dl, ok := e.Deadline(); ok {
					gotDL = dl.Sub(t0)
				}
				if gotDL != s.deadline {
					t.Errorf("step %d (at %s): deadline %s, want %s", i, s.at, gotDL, s.deadline)
				}
			}
		})
	}
}

func TestReasonAndStatus(t *testing.T) {
	e := New(mustPolicy(t, testPolicy))
	t0 := time.Unix(1_000_000, 0)
	f := Facts{Gateways: map[string]Health{"isp1": Up, "isp2": Down}, Links: map[string]bool{"eth1": true}}
	var two Change
	for _, c := range e.Observe(f, t0) {
		if c.Name == "two" {
			two = c
		}
	}
	want := Change{Name: "two", Up: true, Reason: "2 of 3 terms hold (at least 2 needed); not holding: gateway isp2 up"}
	if diff := cmp.Diff(want, two); diff != "" {
		t.Errorf("change (-want +got):\n%s", diff)
	}
	f.Addrs = map[Addr]bool{vip: true}
	e.Observe(f, t0.Add(time.Second))
	var claim Status
	for _, s := range e.Status() {
		if s.Name == "claim" {
			claim = s
		}
	}
	// eth9 is absent, so "not link eth9 up" holds and remote came up at
	// once at t0; claim's terms all hold from t0+1s, when the VIP came.
	wantSt := Status{Name: "claim", Pending: true, Until: t0.Add(3 * time.Second), Terms: []TermStatus{
		{"address 198.18.0.100 on eth0", true}, {"gateway isp1 up", true}, {"condition remote", true},
	}}
	if diff := cmp.Diff(wantSt, claim); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestUpdateKeepsStateAndReportsRemoved(t *testing.T) {
	e := New(mustPolicy(t, testPolicy))
	t0 := time.Unix(1_000_000, 0)
	e.Observe(Facts{Gateways: map[string]Health{"isp1": Up}}, t0)
	if !e.Up("wan-up") {
		t.Fatal("wan-up should be up")
	}
	smaller := mustPolicy(t, twoISPs+`
[condition.wan-up]
any = ["group wan up"]

[condition.new]
any = ["gateway isp2 up"]
`)
	removed := e.Update(smaller)
	if diff := cmp.Diff([]string{"claim", "degraded", "remote", "two", "wan-down"}, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]bool{"wan-up": true, "new": false}, e.States()); diff != "" {
		t.Errorf("states after reload (-want +got):\n%s", diff)
	}
	// A kept condition that still holds makes no change: no second
	// condition_up on reload.
	if got := e.Observe(Facts{Gateways: map[string]Health{"isp1": Up}}, t0.Add(time.Second)); len(got) != 0 {
		t.Errorf("changes after reload: %v", got)
	}
}

func TestWatched(t *testing.T) {
	ifaces, files := Watched(mustPolicy(t, testPolicy))
	if diff := cmp.Diff([]string{"eth0", "eth1", "eth9"}, ifaces); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/run/t/remote"}, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}
