package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/policy"
)

func init() {
	register(command{name: "check", short: "validate a policy file and summarise what it manages", run: runCheck})
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "[flags] FILE...", `Validates each policy file and prints a short summary of what uplinkd would
manage. It never touches the kernel. Exits 0 when every file is valid, and 3
with every error (file:line:col: object: problem) otherwise.

It warns (on stderr, still exiting 0) about each interface that does not
exist on this host: the daemon would start with that gateway down until the
interface appears. With --require-interfaces such an interface of a gateway
that is not optional is an error (exit 2), as 'run --require-interfaces'
would refuse it.`, stderr)
	quiet := fs.Bool("q", false, "print nothing for valid files")
	requireIfaces := fs.Bool("require-interfaces", false, "treat an absent interface of a non-optional gateway as an error")
	files, c := parseArgs(fs, args)
	if c >= 0 {
		return c
	}
	if len(files) == 0 {
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	for _, file := range files {
		p, err := policy.Load(file)
		if err != nil {
			var perrs policy.Errors
			if errors.As(err, &perrs) {
				for _, e := range perrs {
					fmt.Fprintln(stderr, e)
				}
				fmt.Fprintf(stderr, "%s: %d error(s)\n", file, len(perrs))
			} else {
				fmt.Fprintf(stderr, "uplinkd check: %v\n", err)
			}
			code = exitInvalid
			continue
		}
		if !*quiet {
			summarize(stdout, p)
		}
		for _, g := range daemon.AbsentInterfaces(p) {
			if *requireIfaces && !g.Optional {
				fmt.Fprintf(stderr, "%s: gateway %q: interface %s does not exist on this host\n", file, g.Name, g.Interface)
				code = max(code, exitUsage)
				continue
			}
			fmt.Fprintf(stderr, "%s: warning: gateway %q: interface %s does not exist on this host; the gateway will be down until it appears\n", file, g.Name, g.Interface)
		}
	}
	return code
}

func summarize(w io.Writer, p *policy.Policy) {
	fmt.Fprintf(w, "%s: OK\n", p.File)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, g := range p.Gateways {
		extra := ""
		if g.Table != 0 {
			extra = fmt.Sprintf(" table %d (on down: %s)", g.Table, g.OnDown)
		}
		if g.VRF != "" {
			extra = " vrf " + g.VRF
		}
		targets := []string{}
		if g.Probe.Gateway {
			targets = append(targets, "gateway")
		}
		for _, a := range g.Probe.ICMP {
			targets = append(targets, "icmp "+a.String())
		}
		for _, a := range g.Probe.TCP {
			targets = append(targets, "tcp "+a.String())
		}
		for _, c := range g.Probe.HTTP {
			targets = append(targets, fmt.Sprintf("http %s (status %d)", c.URL, c.Status))
		}
		for _, c := range g.Probe.DNS {
			targets = append(targets, fmt.Sprintf("dns %s %s %s", c.Server, c.Type, c.Name))
		}
		via := g.Address.String()
		if g.Auto {
			// Where it will come from: the daemon reads it at start and
			// follows it (internal/daemon, learn.go).
			via = fmt.Sprintf("auto (IPv%d: the nexthop of the default route a DHCP client, RAs or pppd put on %s)", g.Family(), g.Interface)
		}
		fmt.Fprintf(tw, "  gateway\t%s\tvia %s dev %s weight %d tier %d%s\tprofile %s (%s), probes: %s\n",
			g.Name, via, g.Interface, g.Weight, g.Tier, extra, g.Profile.Name, g.Profile.Gating, strings.Join(targets, ", "))
	}
	for _, g := range p.Groups {
		gate := ""
		if g.Condition != "" {
			gate = fmt.Sprintf(", only while %q is up", g.Condition)
		}
		table := fmt.Sprintf("table %d", g.Table)
		if g.VRF != "" {
			// The VRF device's table, which the daemon reads at start
			// and follows (internal/daemon, vrf.go).
			table = fmt.Sprintf("vrf %s's table (read from the device)", g.VRF)
		}
		fmt.Fprintf(tw, "  group\t%s\tIPv%d default in %s over %s%s\tlast resort: %s\n",
			g.Name, g.Family, table, strings.Join(g.Gateways, ", "), gate, g.LastResort)
	}
	for _, c := range p.Conditions {
		fmt.Fprintf(tw, "  condition\t%s\t%s\t%s\n", c.Name, conditionText(c), holdText(c))
	}
	for _, r := range p.Rules {
		fmt.Fprintf(tw, "  rule\t%d\t%s\t\n", r.Priority, ruleText(r))
	}
	for _, a := range p.Announces {
		fmt.Fprintf(tw, "  announce\t%s\t%s %s in table %d\twhile %q is healthy\n", a.Name, a.Type, a.Prefix, a.Table, a.Track)
	}
	for _, h := range p.Hooks {
		fmt.Fprintf(tw, "  hook\t%s\t%s\ton %s (timeout %s)\n", h.Name, h.Command[0], strings.Join(h.Events, ", "), h.Timeout)
	}
	tw.Flush()
	d := p.Daemon
	fmt.Fprintf(w, "  owns routes and rules marked proto %d, rule priorities %d-%d; metrics on %s; on exit: %s\n",
		d.RouteProtocol, d.RulePriority.Min, d.RulePriority.Max, d.Listen, d.OnExit)
}

func ruleText(r *policy.Rule) string {
	var b strings.Builder
	if r.Family == 6 {
		b.WriteString("-6 ")
	}
	if r.From.IsValid() {
		fmt.Fprintf(&b, "from %s ", r.From)
	} else {
		b.WriteString("from all ")
	}
	if r.To.IsValid() {
		fmt.Fprintf(&b, "to %s ", r.To)
	}
	if r.Mark != nil {
		fmt.Fprintf(&b, "fwmark %s ", r.Mark)
	}
	if r.IIF != "" {
		fmt.Fprintf(&b, "iif %s ", r.IIF)
	}
	fmt.Fprintf(&b, "lookup %d", r.Table)
	return b.String()
}

// conditionText is a condition as one line: "all of: a; b".
func conditionText(c *policy.Condition) string {
	terms := make([]string, len(c.Terms))
	for i, t := range c.Terms {
		terms[i] = t.Text
	}
	head := string(c.Match) + " of"
	if c.Match == policy.MatchAtLeast {
		head = fmt.Sprintf("at least %d of", c.AtLeast)
	}
	return head + ": " + strings.Join(terms, "; ")
}

func holdText(c *policy.Condition) string {
	if c.HoldUp == 0 && c.HoldDown == 0 {
		return "no hold"
	}
	return fmt.Sprintf("hold up %s, down %s", c.HoldUp, c.HoldDown)
}
