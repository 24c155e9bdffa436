package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// row is one line of a timeline.
type row struct {
	at   time.Time
	kind string
	text string
	key  bool // a key figure: printed to stand out
}

// timeline collects rows from several sources (logs, metrics, route
// monitor, traffic) and prints them in time order relative to an origin.
type timeline struct {
	rows   []row
	origin time.Time
}

func (t *timeline) add(at time.Time, kind, format string, args ...any) {
	t.rows = append(t.rows, row{at: at, kind: kind, text: fmt.Sprintf(format, args...)})
}

func (t *timeline) addKey(at time.Time, kind, format string, args ...any) {
	t.rows = append(t.rows, row{at: at, kind: kind, text: fmt.Sprintf(format, args...), key: true})
}

// style makes key figures stand out on a terminal and stays plain in a
// file or a CI log.
type style struct{ tty bool }

func newStyle(w io.Writer) style {
	f, ok := w.(*os.File)
	if !ok {
		return style{}
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return style{tty: err == nil && os.Getenv("NO_COLOR") == ""}
}

func (s style) bold(x string) string {
	if !s.tty {
		return x
	}
	return "\x1b[1m" + x + "\x1b[0m"
}

func (s style) red(x string) string {
	if !s.tty {
		return x
	}
	return "\x1b[1;31m" + x + "\x1b[0m"
}

func (s style) green(x string) string {
	if !s.tty {
		return x
	}
	return "\x1b[1;32m" + x + "\x1b[0m"
}

// offset renders at relative to the origin: "+162 ms", "+1.25 s", "-1.50 s".
func offset(at, origin time.Time) string {
	d := at.Sub(origin)
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	if d < 10*time.Second {
		if d < time.Second {
			return fmt.Sprintf("%s%d ms", sign, d.Milliseconds())
		}
		return fmt.Sprintf("%s%.2f s", sign, d.Seconds())
	}
	return fmt.Sprintf("%s%.1f s", sign, d.Seconds())
}

func (t *timeline) print(w io.Writer, st style) {
	sort.SliceStable(t.rows, func(i, j int) bool { return t.rows[i].at.Before(t.rows[j].at) })
	for _, r := range t.rows {
		lines := strings.Split(r.text, "\n")
		kind := fmt.Sprintf("%-9s", r.kind)
		first := lines[0]
		if r.key {
			kind, first = st.bold(kind), st.bold(first)
		}
		fmt.Fprintf(w, "  %10s  %s %s\n", offset(r.at, t.origin), kind, first)
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "  %10s  %-9s %s\n", "", "", l)
		}
	}
}

// ifNames maps the host's interface indexes to names, for route events.
func ifNames(h *netlab.Host) map[int]string {
	m := map[int]string{}
	links, err := h.Handle.LinkList()
	if err != nil {
		return m
	}
	for _, l := range links {
		m[l.Attrs().Index] = l.Attrs().Name
	}
	return m
}

// fmtRoute renders a route event the way `ip monitor route` would.
func fmtRoute(e netlab.RouteEvent, names map[int]string) string {
	r := e.Route
	var sb strings.Builder
	if e.Type == unix.RTM_DELROUTE {
		sb.WriteString("Deleted ")
	}
	if e.Default {
		sb.WriteString("default")
	} else {
		sb.WriteString(r.Dst.String())
	}
	if r.Gw != nil {
		fmt.Fprintf(&sb, " via %s", r.Gw)
	}
	if r.LinkIndex > 0 {
		fmt.Fprintf(&sb, " dev %s", nameOf(names, r.LinkIndex))
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		fmt.Fprintf(&sb, " table %d", r.Table)
	}
	fmt.Fprintf(&sb, " proto %d", r.Protocol)
	if r.Priority != 0 {
		fmt.Fprintf(&sb, " metric %d", r.Priority)
	}
	for _, nh := range r.MultiPath {
		fmt.Fprintf(&sb, "\n\tnexthop via %s dev %s weight %d", ipOr(nh.Gw), nameOf(names, nh.LinkIndex), nh.Hops+1)
	}
	return sb.String()
}

func ipOr(ip net.IP) string {
	if ip == nil {
		return "-"
	}
	return ip.String()
}

func nameOf(names map[int]string, idx int) string {
	if n, ok := names[idx]; ok {
		return n
	}
	return fmt.Sprintf("if%d", idx)
}

// metricsPoller samples uplinkd's probe and evidence counters so that the
// timeline can say when probes were sent and evidence seen.
type metricsPoller struct {
	mu    sync.Mutex
	snaps []snap
}

func (p *metricsPoller) add(s snap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snaps = append(p.snaps, s)
}

func (p *metricsPoller) samples() []snap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]snap(nil), p.snaps...)
}

type snap struct {
	at time.Time
	v  map[string]float64
}

// counterKeys are the series the timeline reports, as "metric|label=value,...".
func counterKeys(ss samples) map[string]float64 {
	m := map[string]float64{}
	for _, s := range ss {
		var k string
		switch s.name {
		case "uplinkd_probes_sent_total":
			k = "probe sent|" + s.labels["gateway"] + "|" + s.labels["kind"]
		case "uplinkd_probes_failed_total":
			k = "probe lost|" + s.labels["gateway"] + "|" + s.labels["kind"]
		case "uplinkd_evidence_events_total":
			k = "evidence|" + s.labels["gateway"] + "|" + s.labels["source"] + " " + s.labels["polarity"]
		default:
			continue
		}
		m[k] += s.value
	}
	return m
}

// rows turns counter increases between consecutive samples into timeline
// rows for gateway gw: one row per sample between from and detail, then
// one summary row at to for everything up to to.
func (p *metricsPoller) rows(t *timeline, gw string, from, detail, to time.Time) {
	var restProbes, restLost float64
	snaps := p.samples()
	for i := 1; i < len(snaps); i++ {
		a, b := snaps[i-1], snaps[i]
		if b.at.Before(from) || !b.at.Before(to) {
			continue
		}
		sent := map[string]float64{}
		var lost float64
		var evidence []string
		for k, v := range b.v {
			d := v - a.v[k]
			parts := strings.SplitN(k, "|", 3)
			if d <= 0 || len(parts) != 3 || parts[1] != gw {
				continue
			}
			switch parts[0] {
			case "evidence":
				evidence = append(evidence, parts[2])
			case "probe sent":
				sent[parts[2]] += d
			case "probe lost":
				lost += d
			}
		}
		if b.at.After(detail) {
			for _, v := range sent {
				restProbes += v
			}
			restLost += lost
			continue
		}
		var parts []string
		kinds := make([]string, 0, len(sent))
		for k := range sent {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%.0f %s", sent[k], k))
		}
		if len(parts) > 0 {
			msg := gw + ": sent " + strings.Join(parts, " + ")
			if lost > 0 {
				msg += fmt.Sprintf(", %.0f unanswered", lost)
			}
			t.add(b.at, "probe", "%s", msg)
		} else if lost > 0 {
			t.add(b.at, "probe", "%s: %.0f unanswered", gw, lost)
		}
		if len(evidence) > 0 {
			sort.Strings(evidence)
			t.add(b.at, "evidence", "%s: %s", gw, strings.Join(evidence, ", "))
		}
	}
	if restProbes > 0 {
		t.add(to, "probe", "%s: %.0f more probes (%.0f unanswered) over the next %.1f s",
			gw, restProbes, restLost, to.Sub(detail).Seconds())
	}
}
