package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

func init() {
	register(command{name: "plan", short: "show what uplinkd would change in this namespace's routes and rules", run: runPlan})
}

func runPlan(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("plan", "[flags] FILE", `Reads the routes and rules this network namespace holds under the policy's
route protocol and prints what uplinkd would change to reach the policy's
desired state, as ip route / ip rule lines: "+" for what would be added or
replaced, "-" for what would be deleted or replaced, "!" for a route of
another protocol in the way (uplinkd never touches those). It changes
nothing. Every gateway is assumed up and every condition down unless
--assume says otherwise.
Exits 0 when nothing would change, 1 when something would, 2 on bad
arguments, 3 on an invalid policy.`, stderr)
	assume := fs.String("assume", "", "gateway health and condition states to assume, as GW=up|degraded|down or CONDITION=up|down,... (gateways not named are up, conditions down)")
	full := fs.Bool("desired", false, "print the whole desired state instead of the changes")
	files, c := parseArgs(fs, args)
	if c >= 0 {
		return c
	}
	if len(files) != 1 {
		fs.Usage()
		return exitUsage
	}
	p, err := policy.Load(files[0])
	if err != nil {
		var perrs policy.Errors
		if errors.As(err, &perrs) {
			for _, e := range perrs {
				fmt.Fprintln(stderr, e)
			}
		} else {
			fmt.Fprintf(stderr, "uplinkd plan: %v\n", err)
		}
		return exitInvalid
	}
	// Auto gateways: what the daemon would learn here now.
	p, notes, err := daemon.Resolve(p)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd plan: %v\n", err)
		return exitFailure
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "# %s\n", n)
	}
	health, err := parseAssume(p, *assume)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd plan: %v\n", err)
		return exitUsage
	}
	want := routing.Desired(p, health)
	if *full {
		fmt.Fprint(stdout, routing.Format(want))
		return exitOK
	}
	rec, err := routing.NewReconciler(routing.Config{Protocol: p.Daemon.RouteProtocol})
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd plan: %v\n", err)
		return exitFailure
	}
	defer rec.Close()
	have, err := rec.ReadOwned(want)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd plan: %v\n", err)
		return exitFailure
	}
	ops := routing.Plan(want, have)
	if len(ops) == 0 {
		fmt.Fprintf(stdout, "no changes: the kernel holds the desired state (%d routes, %d rules, proto %d)\n",
			len(want.Routes), len(want.Rules), p.Daemon.RouteProtocol)
		return exitOK
	}
	conflicts := 0
	for _, op := range ops {
		if op.Kind == routing.OpConflict {
			conflicts++
		}
		for _, l := range op.Lines() {
			fmt.Fprintln(stdout, l)
		}
	}
	if conflicts > 0 {
		fmt.Fprintf(stderr, "uplinkd plan: %d route conflicts (!): another program's route holds a key the policy wants; uplinkd will not write over it, and reports it until it goes\n", conflicts)
	}
	return exitFailure
}

// parseAssume reads "isp1=down,isp2=degraded,claim=up".
func parseAssume(p *policy.Policy, s string) (routing.Snapshot, error) {
	h := routing.Snapshot{}
	if strings.TrimSpace(s) == "" {
		return h, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, state, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("parsing --assume: %q is not GW=STATE", item)
		}
		if p.Condition(name) != nil {
			switch strings.ToLower(state) {
			case "up":
				h[routing.ConditionKey(name)] = routing.Up
			case "down":
				h[routing.ConditionKey(name)] = routing.Down
			default:
				return nil, fmt.Errorf("parsing --assume: state %q of condition %s is not up or down", state, name)
			}
			continue
		}
		if p.Gateway(name) == nil {
			return nil, fmt.Errorf("parsing --assume: gateway %q is not in the policy", name)
		}
		switch strings.ToLower(state) {
		case "up":
			h[name] = routing.Up
		case "degraded":
			h[name] = routing.Degraded
		case "down":
			h[name] = routing.Down
		default:
			return nil, fmt.Errorf("parsing --assume: state %q of %s is not up, degraded or down", state, name)
		}
	}
	return h, nil
}
