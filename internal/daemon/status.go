package daemon

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is what /status serves and `uplinkd status` prints. Durations are
// seconds; ages of evidence that never happened are -1.
type Status struct {
	Version         string          `json:"version"`
	Policy          string          `json:"policy"`
	Now             time.Time       `json:"now"`
	Started         time.Time       `json:"started"`
	LastReload      time.Time       `json:"last_reload"`
	LastReloadOK    bool            `json:"last_reload_ok"`
	LastReloadError string          `json:"last_reload_error,omitempty"`
	RouteProtocol   uint8           `json:"route_protocol"`
	Gateways        []GatewayStatus `json:"gateways"`
	Groups          []GroupStatus   `json:"groups"`
	Routes          []string        `json:"routes"` // every route uplinkd holds, `ip route` style
	Rules           []string        `json:"rules"`  // every rule uplinkd holds, `ip rule` style
}

// GatewayStatus is one gateway in Status.
type GatewayStatus struct {
	Name      string    `json:"name"`
	Interface string    `json:"interface"`
	Address   string    `json:"address"`
	Groups    []string  `json:"groups,omitempty"`
	State     string    `json:"state"`  // detector state: unknown, up, suspect, degraded, down
	Health    string    `json:"health"` // what routing does with it: up, degraded, down
	Up        bool      `json:"up"`     // carries traffic by health (up or degraded)
	Since     time.Time `json:"since"`
	Reason    string    `json:"reason"`
	Carrier   bool      `json:"carrier"`
	Standby   bool      `json:"standby"`

	RTTLast float64 `json:"rtt_last_seconds"`
	RTTAvg  float64 `json:"rtt_avg_seconds"`
	Loss    float64 `json:"loss_ratio"`
	Samples int     `json:"samples"`

	LastConfirmedAge float64 `json:"last_confirmed_age_seconds"`
	LastRxAge        float64 `json:"last_rx_age_seconds"`
	LastTxAge        float64 `json:"last_tx_age_seconds"`
	LastGoodProbeAge float64 `json:"last_good_probe_age_seconds"`

	ProbesPerSecond float64  `json:"probes_per_second"`
	FlapPenalty     float64  `json:"flap_penalty"`
	Damped          bool     `json:"damped"`
	Routes          []string `json:"routes"` // installed routes with a nexthop through this gateway
}

// GroupStatus is one group in Status.
type GroupStatus struct {
	Name     string   `json:"name"`
	Family   int      `json:"family"`
	Table    uint32   `json:"table"`
	Up       bool     `json:"up"`
	Healthy  int      `json:"healthy"`
	Gateways []string `json:"gateways"`
}

// Check reports whether the gateway or group name is up (degraded counts as
// up), and whether the name exists at all.
func (s *Status) Check(name string) (up, found bool) {
	for _, g := range s.Gateways {
		if g.Name == name {
			return g.Up, true
		}
	}
	for _, g := range s.Groups {
		if g.Name == name {
			return g.Up, true
		}
	}
	return false, false
}

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
		since := "-"
		if !g.Since.IsZero() && !s.Now.IsZero() {
			since = shortDur(s.Now.Sub(g.Since)) + " ago"
		}
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
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\n", g.Name, state, g.Healthy, len(g.Gateways), g.Table, strings.Join(g.Gateways, ", "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
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
	if !s.LastReloadOK && s.LastReloadError != "" {
		fmt.Fprintf(&b, "\nlast reload FAILED, previous policy still runs: %s\n", s.LastReloadError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
