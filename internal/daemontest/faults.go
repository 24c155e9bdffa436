package daemontest

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// FaultRun is the outcome of one fault a suite injected: survived means the
// test's own assertions passed; Lost counts the owned routes that should
// have been in the kernel at its end and were not (Missing names them).
// Measured is false for a fault with no daemon policy to measure against
// (a hostile policy that must never start, a clock jump fed to the state
// machine).
type FaultRun struct {
	Name     string
	Survived bool
	Measured bool
	Lost     int
	Missing  []string
}

// FaultLedger collects a package's fault runs for its TestMain summary. It
// asserts nothing itself: a run survives exactly when its test passed.
type FaultLedger struct {
	mu   sync.Mutex
	runs []FaultRun
}

// Record adds one run; safe from parallel tests.
func (l *FaultLedger) Record(r FaultRun) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, r)
}

// Track records t as one fault run when it ends: survived is !t.Failed(),
// and measure (nil for nothing to measure) lists the owned routes missing
// at that moment. Register it after the test's namespaces exist, so it
// runs before they are deleted (cleanups run last-in first-out).
func (l *FaultLedger) Track(t testing.TB, measure func() []string) {
	t.Cleanup(func() {
		r := FaultRun{Name: t.Name(), Survived: !t.Failed()}
		if measure != nil {
			r.Measured = true
			r.Missing = measure()
			r.Lost = len(r.Missing)
		}
		l.Record(r)
	})
}

// Print writes the summary of suite to stdout and, when the environment
// names a file in UPLINKD_FAULT_SUMMARY, appends it there too: go test
// shows a passing package's output only with -v, and make test prints
// that file after the run.
func (l *FaultLedger) Print(suite string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nfault suite %s:", suite)
	l.Summary(&b)
	fmt.Print(b.String())
	if path := os.Getenv("UPLINKD_FAULT_SUMMARY"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(b.String())
			_ = f.Close()
		}
	}
}

// Summary writes one line per run and the totals line
// "faults run N, survived N, routes lost N".
func (l *FaultLedger) Summary(w io.Writer) {
	l.mu.Lock()
	runs := append([]FaultRun(nil), l.runs...)
	l.mu.Unlock()
	sort.Slice(runs, func(i, j int) bool { return runs[i].Name < runs[j].Name })
	survived, lost := 0, 0
	fmt.Fprintf(w, "\n%-60s %-9s %s\n", "fault", "survived", "routes lost")
	for _, r := range runs {
		lostCol := "-"
		if r.Measured {
			lostCol = fmt.Sprint(r.Lost)
			if r.Lost > 0 {
				lostCol += " (" + strings.Join(r.Missing, "; ") + ")"
			}
		}
		if r.Survived {
			survived++
		}
		lost += r.Lost
		fmt.Fprintf(w, "%-60s %-9v %s\n", r.Name, r.Survived, lostCol)
	}
	fmt.Fprintf(w, "faults run %d, survived %d, routes lost %d\n", len(runs), survived, lost)
}

// MissingOwnedRoutes measures, against host's kernel, the default routes a
// daemon running p should own and that are absent: each group's default
// in its table (unless last_resort = "remove" and no member is up, or no
// member's interface exists) and each gateway table's default (while the
// gateway's interface exists). up reports whether a gateway is up, as the
// daemon's status says; nil when the status could not be read, in which
// case a "remove" group is not expected. Any route type counts as present:
// an unreachable last resort is a route uplinkd means to own.
func MissingOwnedRoutes(host *nstest.Host, p *policy.Policy, up func(string) bool) []string {
	proto := fmt.Sprint(p.Daemon.RouteProtocol)
	exists := func(iface string) bool {
		_, err := host.Run("ip", "link", "show", "dev", iface)
		return err == nil
	}
	present := func(fam int, table uint32) bool {
		table = mainIfUnset(table)
		out, err := host.Run("ip", fmt.Sprintf("-%d", fam), "route", "show", "table", fmt.Sprint(table), "proto", proto, "default")
		return err == nil && strings.TrimSpace(out) != ""
	}
	var missing []string
	for _, g := range p.Groups {
		anyUp, anyLink := false, false
		for _, name := range g.Gateways {
			if up != nil && up(name) {
				anyUp = true
			}
			if gw := p.Gateway(name); gw != nil && exists(gw.Interface) {
				anyLink = true
			}
		}
		if !anyLink || g.LastResort == policy.LastResortRemove && !anyUp {
			continue
		}
		if !present(g.Family, g.Table) {
			missing = append(missing, fmt.Sprintf("group %s: IPv%d default in table %s", g.Name, g.Family, policy.TableName(mainIfUnset(g.Table))))
		}
	}
	for _, gw := range p.Gateways {
		if gw.Table == 0 || !exists(gw.Interface) {
			continue
		}
		if fam := gw.Family(); !present(fam, gw.Table) {
			missing = append(missing, fmt.Sprintf("gateway %s: IPv%d default in table %d", gw.Name, fam, gw.Table))
		}
	}
	return missing
}

// mainIfUnset is the table a route of table 0 lands in.
func mainIfUnset(table uint32) uint32 {
	if table == 0 {
		return policy.TableMain
	}
	return table
}
