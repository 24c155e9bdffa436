package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// summary is one (mode, fault) line of the table.
type summary struct {
	Mode           string  `json:"mode"`
	Fault          string  `json:"fault"`
	Runs           int     `json:"runs"`
	Recovered      int     `json:"recovered"` // runs where traffic came back within the window
	MedianOutageMs float64 `json:"median_outage_ms"`
	WorstOutageMs  float64 `json:"worst_outage_ms"`
	MedianNever    bool    `json:"median_never_recovered"`
	WorstNever     bool    `json:"worst_never_recovered"`
	WindowS        float64 `json:"window_s"`

	SwitchedBack      int      `json:"switched_back"`
	WorstSwitchbackMs float64  `json:"worst_switchback_gap_ms"`
	SwitchbackLost    int      `json:"switchback_lost_packets"`
	RouteChanges      []int    `json:"recovery_route_changes"`
	MedianSwitchbackS float64  `json:"median_switchback_after_s"`
	DaemonCPUmsPerRun float64  `json:"daemon_cpu_ms_per_run,omitempty"`
	DaemonPeakRSSMB   float64  `json:"daemon_peak_rss_mb,omitempty"`
	SpuriousChecks    int      `json:"spurious_checks"` // over all runs
	FalseDowns        int      `json:"false_downs"`     // over all runs
	Notes             []string `json:"notes,omitempty"`
}

type report struct {
	Generated time.Time        `json:"generated"`
	Duration  float64          `json:"duration_s"`
	Rate      int              `json:"packets_per_second"`
	Flows     int              `json:"flows"`
	Summary   []summary        `json:"summary"`
	Steady    []*steadyResult  `json:"steady,omitempty"` // one per uplinkd profile
	Runs      []runResult      `json:"runs"`
	Soak      *soakResult      `json:"soak,omitempty"`
	Quality   []*qualityResult `json:"quality,omitempty"`
	NAT       []*natResult     `json:"nat,omitempty"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func newReport(runs []runResult, steady []*steadyResult, o benchOpts, took time.Duration) *report {
	rep := &report{Generated: time.Now().UTC(), Duration: took.Seconds(), Rate: demoRate, Flows: demoFlows, Steady: steady, Runs: runs}
	type key struct{ mode, fault string }
	var order []key
	groups := map[key][]runResult{}
	for _, r := range runs {
		k := key{r.Mode, r.Fault}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		rs := groups[k]
		s := summary{Mode: k.mode, Fault: k.fault, Runs: len(rs), WindowS: o.window.Seconds()}
		if k.mode == "kernel" {
			s.WindowS = o.kernelWindow.Seconds()
		}
		// A run that never recovered counts as infinitely long for the
		// median and the worst case.
		var outs, backAfter []float64
		var cpu float64
		for _, r := range rs {
			v := r.OutageMs
			if !r.Recovered {
				v = 1e18
			} else {
				s.Recovered++
			}
			outs = append(outs, v)
			if r.SwitchedBack {
				s.SwitchedBack++
				s.WorstSwitchbackMs = max(s.WorstSwitchbackMs, r.SwitchbackMs)
				backAfter = append(backAfter, r.SwitchbackAfterS)
			}
			s.SwitchbackLost += r.SwitchbackLost
			s.RouteChanges = append(s.RouteChanges, r.RouteChanges)
			cpu += r.DaemonCPUms
			s.SpuriousChecks += r.SpuriousChecks
			s.FalseDowns += r.FalseDowns
			s.DaemonPeakRSSMB = max(s.DaemonPeakRSSMB, r.DaemonPeakMB)
			if r.Note != "" {
				s.Notes = append(s.Notes, fmt.Sprintf("#%d %s", r.Rep, r.Note))
			}
		}
		s.MedianOutageMs = median(outs)
		sort.Float64s(outs)
		s.WorstOutageMs = outs[len(outs)-1]
		if s.MedianOutageMs >= 1e17 {
			s.MedianNever, s.MedianOutageMs = true, -1
		}
		if s.WorstOutageMs >= 1e17 {
			s.WorstNever, s.WorstOutageMs = true, -1
		}
		s.MedianSwitchbackS = median(backAfter)
		s.DaemonCPUmsPerRun = cpu / float64(len(rs))
		rep.Summary = append(rep.Summary, s)
	}
	return rep
}

func outageText(v float64, never bool, window float64) string {
	if never {
		return fmt.Sprintf("never (>%.0f s)", window)
	}
	if v >= 10000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func (s summary) switchbackText() string {
	if s.SwitchedBack == 0 {
		return "not back"
	}
	t := fmt.Sprintf("%.0f ms", s.WorstSwitchbackMs)
	if s.SwitchbackLost == 0 {
		t = "no loss"
	}
	if s.SwitchedBack < s.Runs {
		t += fmt.Sprintf(" (%d/%d back)", s.SwitchedBack, s.Runs)
	}
	return t
}

func intsText(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// markdown renders the table as in the README.
func (r *report) markdown(w io.Writer) {
	r.markdownFaults(w)
	r.markdownRest(w)
}

func (r *report) markdownFaults(w io.Writer) {
	if len(r.Summary) == 0 {
		return
	}
	fmt.Fprintf(w, "| fault | with | runs | median outage | worst outage | switch-back gap (worst) | switch-back after | route changes per recovery | spurious checks | false downs | daemon CPU per run | daemon peak RSS |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range r.Summary {
		cpu, rss, checks := "", "", ""
		if isUplinkd(s.Mode) {
			checks = fmt.Sprintf("%d | %d", s.SpuriousChecks, s.FalseDowns)
			cpu = fmt.Sprintf("%.0f ms", s.DaemonCPUmsPerRun)
			rss = fmt.Sprintf("%.1f MB", s.DaemonPeakRSSMB)
		}
		after := ""
		if s.SwitchedBack > 0 {
			after = fmt.Sprintf("%.2f s", s.MedianSwitchbackS)
		}
		if checks == "" {
			checks = " | "
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Fault, s.Mode, s.Runs,
			outageText(s.MedianOutageMs, s.MedianNever, s.WindowS), outageText(s.WorstOutageMs, s.WorstNever, s.WindowS),
			s.switchbackText(), after, intsText(s.RouteChanges), checks, cpu, rss)
	}
}

func (r *report) markdownRest(w io.Writer) {
	if len(r.Quality) > 0 {
		fmt.Fprintf(w, "\n| sustained loss on gw1 under traffic | degraded after | probes/s to gw1 |\n| --- | --- | --- |\n")
		for _, q := range r.Quality {
			v := fmt.Sprintf("not within %.0f s", q.AfterS)
			if q.Degraded {
				v = fmt.Sprintf("%.1f s", q.AfterS)
			}
			fmt.Fprintf(w, "| %s, %d %% | %s | %.2f |\n", q.Mode, q.LossPercent, v, q.ProbesPerS)
		}
	}
	if len(r.NAT) > 0 {
		fmt.Fprintf(w, "\n| NAT router, g1 dies and returns | healthy flows moved at failover | moved at return (busy) | outage of g1's flows | verdict after the first loss | conntrack of g2..g4 kept | flushed | TCP streams broken (through g2..g4) | writes at failover, return |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, n := range r.NAT {
			fmt.Fprintf(w, "| %s, %s | %d of %d | %d (%d) | %s | %s | %d/%d | %d | %d of 4 (%d) | %s |\n", n.NAT, n.natWith(), n.MovedAtFailover, n.Flows-n.Uplink1Flows,
				n.MovedAtReturn, n.BusyMovedAtReturn, n.answered(), n.detected(), n.OthersKept, n.OthersBefore, n.Flushed, n.TCPErrors, n.HealthyTCP, n.writes())
		}
	}
	if s := r.Soak; s != nil {
		fmt.Fprintf(w, "\n| soak | minutes | false downs | suspects | spurious checks | probes/s | daemon CPU | peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		fmt.Fprintf(w, "| %s, traffic on both, %d %% loss on each, CPU hog | %.0f | %d | %d | %d (%.1f/min) | %.2f | %.2f %% of a core | %.1f MB |\n",
			s.Mode, s.LossPercent, s.DurationS/60, s.FalseDowns, s.Suspects, s.SpuriousChecks, s.ChecksPerMin, s.ProbesPerS, s.DaemonCPUPct, s.PeakRSSMB)
	}
	if len(r.Steady) > 0 {
		fmt.Fprintf(w, "\n| no fault | probes/s idle (gw1, gw2) | under TCP | under one-way UDP | spurious checks | idle CPU | peak RSS |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, st := range r.Steady {
			fmt.Fprintf(w, "| %s | %.2f, %.2f | %.2f, %.2f | %.2f, %.2f | %d | %.2f %% of a core | %.1f MB |\n", st.Mode,
				st.ProbesIdle[0], st.ProbesIdle[1], st.ProbesTCP[0], st.ProbesTCP[1], st.ProbesUDP[0], st.ProbesUDP[1],
				st.SpuriousChecks, st.IdleCPUPct, st.PeakRSSMB)
		}
	}
}

func (r *report) printTable(w io.Writer, st style) {
	if len(r.Summary) > 0 {
		r.printFaultHeader(w)
	}
	r.printFaults(w, st)
}

func (r *report) printFaultHeader(w io.Writer) {
	fmt.Fprintf(w, "%-13s %-12s %4s  %-16s %-16s %-22s %-10s %-14s %-9s %-6s %-9s %s\n", "fault", "with", "runs", "median outage", "worst outage", "switch-back gap", "back after", "route changes", "spurious", "false", "CPU/run", "peak RSS")
}

func (r *report) printFaults(w io.Writer, st style) {
	for _, s := range r.Summary {
		cpu, rss, sp, fd := "-", "-", "-", "-"
		if isUplinkd(s.Mode) {
			sp, fd = strconv.Itoa(s.SpuriousChecks), strconv.Itoa(s.FalseDowns)
			cpu = fmt.Sprintf("%.0f ms", s.DaemonCPUmsPerRun)
			rss = fmt.Sprintf("%.1f MB", s.DaemonPeakRSSMB)
		}
		after := "-"
		if s.SwitchedBack > 0 {
			after = fmt.Sprintf("%.2f s", s.MedianSwitchbackS)
		}
		med := fmt.Sprintf("%-16s", outageText(s.MedianOutageMs, s.MedianNever, s.WindowS))
		if isUplinkd(s.Mode) {
			med = st.bold(med)
		}
		fmt.Fprintf(w, "%-13s %-12s %4d  %s %-16s %-22s %-10s %-14s %-9s %-6s %-9s %s\n", s.Fault, s.Mode, s.Runs, med,
			outageText(s.WorstOutageMs, s.WorstNever, s.WindowS), s.switchbackText(), after, intsText(s.RouteChanges), sp, fd, cpu, rss)
		for _, n := range s.Notes {
			fmt.Fprintf(w, "%-13s %-12s       note: %s\n", "", "", n)
		}
	}
	r.printRatios(w)
	for _, q := range r.Quality {
		v := fmt.Sprintf("not degraded within %.0f s", q.AfterS)
		if q.Degraded {
			v = fmt.Sprintf("degraded after %.1f s", q.AfterS)
		}
		fmt.Fprintf(w, "\nquality (%s, %d %% loss on gw1 under traffic): %s, %.2f probes/s to gw1", q.Mode, q.LossPercent, v, q.ProbesPerS)
	}
	if len(r.Quality) > 0 {
		fmt.Fprintln(w)
	}
	if len(r.NAT) > 0 {
		fmt.Fprintf(w, "\n%-11s %-28s %-14s %-14s %-14s %-10s %-16s %-8s %-6s %s\n", "NAT", "with", "moved (fail)", "moved (ret)", "g1 outage", "verdict", "ct g2..g4 kept", "flushed", "TCP (g2..g4)", "writes")
		for _, n := range r.NAT {
			fmt.Fprintf(w, "%-11s %-28s %-14s %-14s %-14s %-10s %-16s %-8d %-6s %s\n", n.NAT, n.natWith(), fmt.Sprintf("%d of %d", n.MovedAtFailover, n.Flows-n.Uplink1Flows),
				fmt.Sprintf("%d (%d busy)", n.MovedAtReturn, n.BusyMovedAtReturn), n.answered(), n.detected(), fmt.Sprintf("%d/%d", n.OthersKept, n.OthersBefore), n.Flushed,
				fmt.Sprintf("%d/4 (%d)", n.TCPErrors, n.HealthyTCP), n.writes())
		}
	}
	if s := r.Soak; s != nil {
		fmt.Fprintf(w, "\nsoak (%s, %.0f min, traffic on both, %d %% loss on each, CPU hog): %d false downs, %d suspects, %d spurious checks (%.1f/min), %.2f probes/s, CPU %.2f %%, peak RSS %.1f MB\n",
			s.Mode, s.DurationS/60, s.LossPercent, s.FalseDowns, s.Suspects, s.SpuriousChecks, s.ChecksPerMin, s.ProbesPerS, s.DaemonCPUPct, s.PeakRSSMB)
	}
	for _, s := range r.Steady {
		fmt.Fprintf(w, "\nprobes/s (%s, no fault)   %-12s %-12s %s\n", s.Mode, "idle", "TCP", "one-way UDP")
		for i, gw := range []string{"gw1", "gw2"} {
			fmt.Fprintf(w, "  toward %-22s %-12.2f %-12.2f %.2f\n", gw, s.ProbesIdle[i], s.ProbesTCP[i], s.ProbesUDP[i])
		}
		fmt.Fprintf(w, "daemon idle CPU %.2f %% of a core, peak RSS %.1f MB, %d spurious checks over the three phases\n", s.IdleCPUPct, s.PeakRSSMB, s.SpuriousChecks)
	}
}

// printRatios prints, per fault, each uplinkd mode's median outage over
// BFD's, where the bench ran a BFD row.
func (r *report) printRatios(w io.Writer) {
	bfd := map[string]summary{}
	for _, s := range r.Summary {
		if s.Mode == modeBFD && !s.MedianNever {
			bfd[s.Fault] = s
		}
	}
	if len(bfd) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmedian outage / BFD's (FRR bfdd 50 ms × 3)\n")
	for _, s := range r.Summary {
		b, ok := bfd[s.Fault]
		if !ok || !isUplinkd(s.Mode) || s.MedianNever || b.MedianOutageMs <= 0 {
			continue
		}
		fmt.Fprintf(w, "  %-13s %-12s %.2f (%.0f ms / %.0f ms)\n", s.Fault, s.Mode, s.MedianOutageMs/b.MedianOutageMs, s.MedianOutageMs, b.MedianOutageMs)
	}
}

// write stores the report as out/bench.json, out/bench.csv (one line per
// fault and mode) and out/bench.md (the README table).
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding bench.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing bench.json: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "bench.csv"))
	if err != nil {
		return fmt.Errorf("writing bench.csv: %w", err)
	}
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"fault", "with", "runs", "recovered", "median_outage_ms", "worst_outage_ms", "window_s",
		"switched_back", "worst_switchback_gap_ms", "switchback_lost_packets", "median_switchback_after_s",
		"recovery_route_changes", "daemon_cpu_ms_per_run", "daemon_peak_rss_mb",
		"spurious_checks", "false_downs",
		"probes_s_idle_gw1", "probes_s_idle_gw2", "probes_s_tcp_gw1", "probes_s_tcp_gw2", "probes_s_udp_gw1", "probes_s_udp_gw2", "idle_cpu_percent"})
	ff := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	for _, s := range r.Summary {
		row := []string{s.Fault, s.Mode, strconv.Itoa(s.Runs), strconv.Itoa(s.Recovered),
			ff(s.MedianOutageMs), ff(s.WorstOutageMs), ff(s.WindowS),
			strconv.Itoa(s.SwitchedBack), ff(s.WorstSwitchbackMs), strconv.Itoa(s.SwitchbackLost), ff(s.MedianSwitchbackS),
			intsText(s.RouteChanges), ff(s.DaemonCPUmsPerRun), ff(s.DaemonPeakRSSMB),
			strconv.Itoa(s.SpuriousChecks), strconv.Itoa(s.FalseDowns)}
		if st := r.steadyOf(s.Mode); st != nil {
			row = append(row, ff(st.ProbesIdle[0]), ff(st.ProbesIdle[1]), ff(st.ProbesTCP[0]), ff(st.ProbesTCP[1]), ff(st.ProbesUDP[0]), ff(st.ProbesUDP[1]), ff(st.IdleCPUPct))
		} else {
			row = append(row, "", "", "", "", "", "", "")
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return fmt.Errorf("writing bench.csv: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing bench.csv: %w", err)
	}
	var md strings.Builder
	r.markdown(&md)
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("writing bench.md: %w", err)
	}
	return nil
}

// steadyOf returns the steady-state figures of mode, if measured.
func (r *report) steadyOf(mode string) *steadyResult {
	for _, s := range r.Steady {
		if s.Mode == mode {
			return s
		}
	}
	return nil
}
