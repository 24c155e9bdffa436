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
time since the last change, RTT (last/average), loss, the age of each kind of
evidence (neighbour confirmation, rx, tx, good probe), probes per second and
the routes it holds; then the groups and the rules uplinkd owns. With NAME,
only that gateway.

It reads /status from the daemon's HTTP listener (--addr), or from the
root-only control socket with --socket.

--check NAME is for keepalived's track_script and shell scripts: it prints
nothing and exits 0 when that gateway or group is up (degraded counts as
up), 1 when it is down, and 2 when NAME is unknown or the daemon cannot be
reached (which a track_script must treat as failure too).`, stderr)
	addr := fs.String("addr", "", "daemon's HTTP `HOST:PORT` (default: [daemon] listen of --config, else "+policy.DefaultListen+")")
	config := fs.String("config", "", "policy `FILE` to read the listen address from")
	socket := fs.String("socket", "", "read status from this control socket `PATH` instead of HTTP")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	check := fs.String("check", "", "exit 0 if gateway or group `NAME` is up, 1 if not, 2 if unknown or unreachable")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if c := parseFlags(fs, args); c >= 0 {
		return c
	}
	if fs.NArg() > 1 || (*check != "" && fs.NArg() > 0) {
		fs.Usage()
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	var raw []byte
	var err error
	if *socket != "" {
		var out string
		out, err = daemon.Control(ctx, *socket, daemon.CmdStatus)
		raw = []byte(out)
	} else {
		a := *addr
		if a == "" {
			a = policy.DefaultListen
			if *config != "" {
				p, perr := policy.Load(*config)
				if perr != nil {
					fmt.Fprintf(stderr, "uplinkd status: reading listen from %s: %v\n", *config, perr)
					return exitUsage
				}
				if p.Daemon.Listen == "" {
					fmt.Fprintf(stderr, "uplinkd status: %s disables the HTTP listener; use --socket\n", *config)
					return exitUsage
				}
				a = p.Daemon.Listen
			}
		}
		raw, err = fetchStatus(ctx, a)
	}
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd status: %v\n", err)
		return exitUsage
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		fmt.Fprintf(stderr, "uplinkd status: decoding the daemon's status: %v\n", err)
		return exitUsage
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
	if name := fs.Arg(0); name != "" {
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
		if len(keep) == 0 && len(groups) == 0 {
			fmt.Fprintf(stderr, "uplinkd status: no gateway or group %q\n", name)
			return exitUsage
		}
		st.Gateways, st.Groups, st.Rules = keep, groups, nil
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&st); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if err := daemon.WriteTable(stdout, &st); err != nil {
		return exitFailure
	}
	return exitOK
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
