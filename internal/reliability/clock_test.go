package reliability

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/policy"
)

// wallShift returns t with its wall-clock reading moved by d (whole
// seconds) and its monotonic reading untouched: what time.Now() returns
// after an administrator or a broken NTP step moves the system clock.
// Go offers no API for that (CLOCK_REALTIME cannot be stepped on a shared
// machine either), so it edits the documented representation of
// time.Time — a wall word holding hasMonotonic(1) | seconds since
// 1885(33) | nanoseconds(30), then the monotonic reading — and the caller
// checks the result (checkShift) so a layout change fails loudly instead
// of proving nothing.
func wallShift(t time.Time, d time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const nsecShift = 30
	p := (*layout)(unsafe.Pointer(&t))
	p.wall += uint64(int64(d/time.Second)) << nsecShift
	return t
}

func checkShift(t *testing.T, base time.Time, d time.Duration) {
	t.Helper()
	s := wallShift(base, d)
	if got := s.Sub(base); got != 0 {
		t.Fatalf("wallShift changed the monotonic reading by %v: time.Time's layout changed, the test proves nothing", got)
	}
	if got := time.Duration(s.Unix()-base.Unix()) * time.Second; got != d {
		t.Fatalf("wallShift moved the wall clock by %v, want %v: time.Time's layout changed", got, d)
	}
}

type clockStep struct {
	at   time.Duration // monotonic offset from the start
	wall time.Duration // wall-clock jump in effect at this step
	ev   detector.Event
}

type seen struct {
	At       time.Duration // monotonic offset of the transition
	From, To detector.State
	Cause    string
	Reason   string
}

func runMachine(g *policy.Gateway, base time.Time, steps []clockStep, jumps bool) []seen {
	m := detector.NewMachine(g, base)
	var out []seen
	for _, s := range steps {
		now := base.Add(s.at)
		if jumps {
			now = wallShift(now, s.wall)
		}
		if tr, ok := m.Observe(s.ev, now); ok {
			out = append(out, seen{tr.At.Sub(base), tr.From, tr.To, tr.Cause, tr.Reason})
		}
		// Query what the detector's loop queries too: the penalty decays
		// and probe intervals follow from durations only.
		_ = m.Penalty(now)
		_ = m.ProbeInterval(now)
	}
	return out
}

// Fault 10: health timing uses the monotonic clock, so a wall-clock jump
// changes nothing. The health state machine takes its clock from the
// caller (the detector passes time.Now(), which carries a monotonic
// reading). The same evidence is fed twice, once with a steady wall clock
// and once with the wall clock stepped back an hour in the middle of a
// down count, forward a day during damping decay and back again during a
// link hold; the transitions — states, causes, reasons, and their times —
// must be identical.
//
// What this proves and what it does not: it proves the state machine
// (every timing decision: down/up counts, tx-without-rx, link hold,
// damping half-life, probe intervals) uses only monotonic differences of
// the times it is given. TestDetectorClockSources checks the detector
// hands it time.Now() values and never strips their monotonic reading.
// An end-to-end run under a real step of CLOCK_REALTIME is not done: the
// machine is shared, and time namespaces only offset the monotonic and
// boot clocks, not the wall clock.
func TestWallClockJumpChangesNothing(t *testing.T) {
	faultRun(t) // the jump is fed to the state machine: no kernel to measure
	base := time.Now()
	checkShift(t, base, -time.Hour)
	checkShift(t, base, 24*time.Hour)

	prof := policy.DefaultProfile()
	prof.Damping = true
	g := &policy.Gateway{Name: "gw1", Address: netip.MustParseAddr("198.18.1.1"), Interface: "eth1", Profile: &prof}
	ms := time.Millisecond
	good := detector.Event{Kind: detector.EvProbe, OK: true, RTT: 2 * ms}
	lost := detector.Event{Kind: detector.EvProbe, OK: false, Detail: "no reply"}
	tick := detector.Event{Kind: detector.EvTick}
	carrierDown := detector.Event{Kind: detector.EvCarrier, Iface: "eth1", OK: false}
	carrierUp := detector.Event{Kind: detector.EvCarrier, Iface: "eth1", OK: true}
	silent := detector.Event{Kind: detector.EvTxWithoutRx, For: 80 * ms}

	var steps []clockStep
	at := time.Duration(0)
	wall := time.Duration(0)
	add := func(d time.Duration, ev detector.Event) {
		at += d
		steps = append(steps, clockStep{at, wall, ev})
	}
	add(0, good) // Unknown -> Up
	for cycle := 0; cycle < 4; cycle++ {
		add(time.Second, silent)
		add(25*ms, lost)
		if cycle == 1 {
			wall = -time.Hour // stepped back in the middle of a down count
		}
		add(25*ms, lost)
		add(25*ms, lost)
		for i := 0; i < 5; i++ {
			add(time.Second, good)
		}
		add(time.Second, tick)
	}
	wall = 24 * time.Hour // forward during damping decay
	for i := 0; i < 40; i++ {
		add(5*time.Second, good)
		add(0, tick)
	}
	add(time.Second, carrierDown)
	add(100*ms, carrierUp)
	wall = 0 // back during the link hold
	for i := 0; i < 20; i++ {
		add(100*ms, good)
		add(0, tick)
	}

	steady := runMachine(g, base, steps, false)
	jumped := runMachine(g, base, steps, true)
	if len(steady) < 8 {
		t.Fatalf("the script made only %d transitions; it does not exercise the timers: %+v", len(steady), steady)
	}
	if diff := cmp.Diff(steady, jumped); diff != "" {
		t.Errorf("wall-clock jumps changed health decisions (-steady +jumped):\n%s", diff)
	}
	causes := map[string]bool{}
	for _, s := range steady {
		causes[s.Cause] = true
	}
	for _, c := range []string{"probe", "damping", "carrier"} {
		if !causes[c] {
			t.Errorf("no %q transition in the script; have %v", c, causes)
		}
	}
	t.Logf("%d transitions identical with the wall clock stepped -1h, +24h and back", len(steady))
}

// TestDetectorClockSources reads the detector's source: every time it
// hands the state machine comes from time.Now (or an injected clock) and
// nothing strips the monotonic reading on the way (Round, Truncate, UTC,
// Local, In, AddDate on a time.Time, or a time rebuilt from Unix
// seconds). Duration.Round in formatting is allowed.
func TestDetectorClockSources(t *testing.T) {
	dir := filepath.Join(daemontest.Root(), "detector")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("reading detector sources: %v", err)
	}
	stripping := regexp.MustCompile(`\.(UTC|Local|In|AddDate)\(|time\.Unix\(|time\.UnixMilli\(|time\.Date\(`)
	durRound := regexp.MustCompile(`\b(\w+)\.(Round|Truncate)\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			code, _, _ := strings.Cut(line, "//")
			if m := stripping.FindString(code); m != "" {
				t.Errorf("%s:%d: %q strips or rebuilds a monotonic time: %s", filepath.Base(f), i+1, m, strings.TrimSpace(line))
			}
			for _, m := range durRound.FindAllStringSubmatch(code, -1) {
				// fmtDur's argument d is a time.Duration.
				if m[1] != "d" {
					t.Errorf("%s:%d: %s.%s on something that may be a time.Time: %s", filepath.Base(f), i+1, m[1], m[2], strings.TrimSpace(line))
				}
			}
		}
	}
}
