package daemon

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/uplinkd/uplinkd/detector"
)

// ageText renders an age in seconds; -1 (never) is "-".
func ageText(sec float64) string {
	if sec < 0 || math.IsNaN(sec) {
		return "-"
	}
	return shortDur(time.Duration(sec * float64(time.Second)))
}

// shortDur rounds a duration for a table: 3 significant figures at most.
func shortDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// sinceText is how long ago t was; "-" for never.
func sinceText(now, t time.Time) string {
	if t.IsZero() || now.IsZero() {
		return "-"
	}
	return shortDur(now.Sub(t)) + " ago"
}

func rttText(last, avg float64) string {
	if last <= 0 && avg <= 0 {
		return "-"
	}
	return shortDur(time.Duration(last*float64(time.Second))) + "/" + shortDur(time.Duration(avg*float64(time.Second)))
}

func lossText(loss float64, samples int) string {
	if samples == 0 {
		return "-"
	}
	return strconv.FormatFloat(loss*100, 'f', 1, 64) + "%"
}

// WriteTable prints s for people: one line per gateway, then the groups,
// then the routes each gateway holds.
func WriteTable(w io.Writer, s *Status) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tINTERFACE\tSTATE\tSINCE\tRTT LAST/AVG\tLOSS\tCONFIRMED\tRX\tTX\tGOOD PROBE\tPROBES/S\tROUTES\tREASON")
	for _, g := range s.Gateways {
		state := g.State
		if g.Standby {
			state += " (standby)"
		}
		if g.Damped {
			state += " (damped)"
		}
		since := sinceText(s.Now, g.Since)
		reason := g.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%d\t%s\n",
			g.Name, g.Interface, state, since, rttText(g.RTTLast, g.RTTAvg), lossText(g.Loss, g.Samples),
			ageText(g.LastConfirmedAge), ageText(g.LastRxAge), ageText(g.LastTxAge), ageText(g.LastGoodProbeAge),
			g.ProbesPerSecond, len(g.Routes), reason)
	}
	if len(s.Groups) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "GROUP\tSTATE\tHEALTHY\tTABLE\tGATEWAYS")
		for _, g := range s.Groups {
			state := "down"
			if g.Up {
				state = "up"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", g.Name, state, g.Healthy, len(g.Gateways), groupTableText(g), strings.Join(g.Gateways, ", "))
		}
	}
	writeConditions(tw, s)
	writeBFD(tw, s)
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	writeAuto(&b, s)
	writeVRFWarnings(&b, s)
	for _, g := range s.Gateways {
		if len(g.Routes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s holds:\n", g.Name)
		for _, r := range g.Routes {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	if len(s.Rules) > 0 {
		fmt.Fprintf(&b, "\nrules (proto %d):\n", s.RouteProtocol)
		for _, r := range s.Rules {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	if s.Multipath != "" && len(s.Groups) > 0 {
		fmt.Fprintf(&b, "\ngroup defaults: %s\n", multipathText(s.Multipath))
		if s.MultipathReason != "" {
			fmt.Fprintf(&b, "  because %s\n", s.MultipathReason)
		}
	}
	if len(s.Conflicts) > 0 {
		fmt.Fprintf(&b, "\nroute conflicts (not written; retried on every resync):\n")
		for _, c := range s.Conflicts {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	}
	var byIface []string
	for _, g := range s.Gateways {
		if g.TrafficCounting == detector.TrafficPerInterface {
			byIface = append(byIface, g.Name)
		}
	}
	if s.TrafficBackend == detector.BackendNftables {
		fmt.Fprintf(&b, "\ntraffic counting: per gateway with nftables, not eBPF (%s): several times the cost per packet\n", s.TrafficBackendReason)
	}
	if len(byIface) > 0 {
		fmt.Fprintf(&b, "\ntraffic counting: interface counters for %s (per-gateway counting unavailable, see the log): gateways sharing an interface cannot be told apart by traffic\n",
			strings.Join(byIface, ", "))
	}
	if !s.LastReloadOK && s.LastReloadError != "" {
		fmt.Fprintf(&b, "\nlast reload FAILED, previous policy still runs: %s\n", s.LastReloadError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// groupTableText is a group's table for the status table: a VRF's group
// names its VRF, and says so while the VRF is absent.
func groupTableText(g GroupStatus) string {
	switch {
	case g.VRF != "" && g.Table == 0:
		return "vrf " + g.VRF + " (absent)"
	case g.VRF != "":
		return fmt.Sprintf("%d (vrf %s)", g.Table, g.VRF)
	}
	return fmt.Sprint(g.Table)
}

// writeVRFWarnings lists the gateways whose VRF routes by the wrong table.
func writeVRFWarnings(b *strings.Builder, s *Status) {
	for _, g := range s.Gateways {
		if g.VRFWarning != "" {
			fmt.Fprintf(b, "\nWARNING gateway %s: %s\n", g.Name, g.VRFWarning)
		}
	}
}

// writeAuto says, for each auto gateway, what it learned and from where.
func writeAuto(b *strings.Builder, s *Status) {
	first := true
	for _, g := range s.Gateways {
		if !g.Auto {
			continue
		}
		if first {
			b.WriteString("\nauto gateways:\n")
			first = false
		}
		if g.AddressSource == "" {
			fmt.Fprintf(b, "  %s: nothing learned on %s (no default route of another program there)\n", g.Name, g.Interface)
			continue
		}
		fmt.Fprintf(b, "  %s: %s, learned from %s\n", g.Name, g.Address, g.AddressSource)
	}
}

func multipathText(form string) string {
	switch form {
	case "resilient":
		return "resilient nexthop groups"
	case "mpath":
		return "nexthop groups, not resilient"
	case "classic":
		return "classic multipath routes"
	}
	return form
}

// writeConditions prints one line per condition: its state, a pending
// change and when it ends, and the terms that do not hold.
func writeConditions(tw io.Writer, s *Status) {
	if len(s.Conditions) == 0 {
		return
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CONDITION\tSTATE\tSINCE\tHOLDING\tNOT HOLDING")
	for _, c := range s.Conditions {
		state := "down"
		if c.Up {
			state = "up"
		}
		if c.Pending {
			next := "up"
			if c.Up {
				next = "down"
			}
			state += fmt.Sprintf(" (%s in %s)", next, shortDur(c.Until.Sub(s.Now)))
		}
		since := sinceText(s.Now, c.Since)
		n := 0
		var fail []string
		for _, t := range c.Terms {
			if t.Holds {
				n++
			} else {
				fail = append(fail, t.Term)
			}
		}
		not := "-"
		if len(fail) > 0 {
			not = strings.Join(fail, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", c.Name, state, since, n, len(c.Terms), not)
	}
}

// writeBFD prints one line per BFD session: its state and the peer's, the
// discriminators, the negotiated intervals and both diags.
func writeBFD(tw io.Writer, s *Status) {
	header := false
	for _, g := range s.Gateways {
		b := g.BFD
		if b == nil {
			continue
		}
		if !header {
			fmt.Fprintln(tw)
			fmt.Fprintln(tw, "BFD	STATE	REMOTE	DISCR LOCAL/REMOTE	TX	DETECT	DIAG LOCAL/REMOTE")
			header = true
		}
		state := b.State.String()
		if b.DemandActive {
			state += " (demand)"
		}
		remote := b.Remote.String()
		if b.Multihop {
			remote += " (multihop)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s/%s\n", g.Name, state, remote, b.LocalDiscr, b.RemoteDiscr,
			shortDur(time.Duration(b.TxIntervalSeconds*float64(time.Second))),
			shortDur(time.Duration(b.DetectTimeSeconds*float64(time.Second))), b.Diag, b.RemoteDiag)
	}
}
