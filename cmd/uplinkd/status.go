package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/policy"
)

func init() {
	register(command{name: "status", short: "show gateway health and the routes uplinkd holds", run: runStatus})
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "[flags] [NAME]", `Prints the running daemon's view: for each gateway its interface, state,
time since the last change, RTT, loss, the routes it holds and why it is in
its state; then the groups and the rules uplinkd owns. The table fits 100
columns; --wide adds the age of each kind of evidence (neighbour
confirmation, rx, tx, good probe) and probes per second, and never cuts a
line. With NAME, only that gateway or group.

It finds the daemon from the policy (--config, by default `+defaultConfig+`
when it exists): its [daemon] listen address first, then its control_socket
if the listener is off or does not answer. --addr or --socket pick one.

--check NAME is for keepalived's track_script and shell scripts: it prints
nothing and exits 0 when that gateway or group is up (degraded counts as
up), 1 when it is down, 2 when NAME is unknown, and 4 when the daemon cannot
be reached (a track_script must treat every non-zero status as failure).`, stderr)
	addr := fs.String("addr", "", "daemon's HTTP `HOST:PORT` (default: [daemon] listen of the policy, else "+policy.DefaultListen+")")
	config := fs.String("config", "", "policy `FILE` to find the daemon from (default "+defaultConfig+" if it exists)")
	socket := fs.String("socket", "", "read status from this control socket `PATH` instead of HTTP")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	wide := fs.Bool("wide", false, "print every column and whole lines, however wide")
	check := fs.String("check", "", "exit 0 if gateway or group `NAME` is up, 1 if not, 2 if unknown, 4 if unreachable")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	names, c := parseArgs(fs, args)
	if c >= 0 {
		return c
	}
	if len(names) > 1 || (*check != "" && len(names) > 0) {
		fs.Usage()
		return exitUsage
	}
	ep, code := findDaemon(*addr, *socket, *config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	raw, err := ep.fetch(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd status: %v\n", err)
		if isUnreachable(err) {
			return exitUnreachable
		}
		return exitFailure
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		fmt.Fprintf(stderr, "uplinkd status: decoding the daemon's status: %v\n", err)
		return exitFailure
	}
	if *check != "" {
		up, found := st.Check(*check)
		switch {
		case !found:
			fmt.Fprintf(stderr, "uplinkd status: no gateway or group %q\n", *check)
			return exitUsage
		case up:
			return exitOK
		}
		return exitFailure
	}
	if len(names) == 1 && !only(&st, names[0]) {
		fmt.Fprintf(stderr, "uplinkd status: no gateway or group %q\n", names[0])
		return exitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&st); err != nil {
			return exitFailure
		}
		return exitOK
	}
	write := writeNarrow
	if *wide {
		write = daemon.WriteTable
	}
	if err := write(stdout, &st); err != nil {
		return exitFailure
	}
	return exitOK
}

// only keeps the gateway, group or condition name in st; false if there
// is none.
func only(st *daemon.Status, name string) bool {
	var keep []daemon.GatewayStatus
	for _, g := range st.Gateways {
		if g.Name == name {
			keep = append(keep, g)
		}
	}
	var groups []daemon.GroupStatus
	for _, g := range st.Groups {
		if g.Name == name {
			groups = append(groups, g)
		}
	}
	var conds []daemon.ConditionStatus
	for _, c := range st.Conditions {
		if c.Name == name {
			conds = append(conds, c)
		}
	}
	st.Gateways, st.Groups, st.Conditions, st.Rules = keep, groups, conds, nil
	return len(keep) > 0 || len(groups) > 0 || len(conds) > 0
}

// endpoint is where a daemon may answer: its HTTP listener, its control
// socket, or both (tried in that order).
type endpoint struct{ addr, socket string }

func (ep endpoint) fetch(ctx context.Context) ([]byte, error) {
	var errs []error
	if ep.addr != "" {
		raw, err := fetchStatus(ctx, ep.addr)
		if err == nil || !isUnreachable(err) || ep.socket == "" {
			return raw, err
		}
		errs = append(errs, err)
	}
	out, err := daemon.Control(ctx, ep.socket, daemon.CmdStatus)
	if err != nil {
		// Unreachable on both: the chain keeps both reasons, and
		// isUnreachable still sees them.
		return nil, errors.Join(append(errs, err)...)
	}
	return []byte(out), nil
}

// findDaemon resolves the endpoint from the flags, else from the policy
// (the one given, or the default one if it exists), else the defaults.
// code is -1 on success.
func findDaemon(addr, socket, config string, stderr io.Writer) (endpoint, int) {
	switch {
	case socket != "":
		return endpoint{socket: socket}, -1
	case addr != "":
		return endpoint{addr: addr}, -1
	}
	if config == "" {
		if _, err := os.Stat(defaultConfig); err != nil {
			return endpoint{addr: policy.DefaultListen, socket: policy.DefaultControlSocket}, -1
		}
		config = defaultConfig
	}
	p, err := policy.Load(config)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd status: finding the daemon from %s: %v\n", config, err)
		return endpoint{}, exitInvalid
	}
	ep := endpoint{addr: p.Daemon.Listen, socket: p.Daemon.ControlSocket}
	if ep.addr == "" && ep.socket == "" {
		fmt.Fprintf(stderr, "uplinkd status: %s disables both the HTTP listener and the control socket\n", config)
		return endpoint{}, exitUsage
	}
	return ep, -1
}

func fetchStatus(ctx context.Context, addr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching status from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading status from %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching status from %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// isUnreachable reports whether err means no daemon answered.
func isUnreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, context.DeadlineExceeded)
}
