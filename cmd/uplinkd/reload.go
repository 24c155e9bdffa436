package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/uplinkd/uplinkd/internal/daemon"
	"github.com/uplinkd/uplinkd/policy"
)

func init() {
	register(command{name: "reload", short: "make the running daemon reload its policy", run: runReload})
}

func runReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", "[flags]", `Asks the running daemon, through its root-only control socket, to re-read
and apply its policy, and waits for the result. An invalid policy is refused
and the running one stays; the reason is printed and the exit status is 1.
Gateways that did not change keep their health and their routes.

Exit status: 0 reloaded, 1 refused or failed, 2 usage error, 3 the --config
given cannot be read, 4 no daemon on the socket.`, stderr)
	socket := fs.String("socket", "", "control `PATH` (default: [daemon] control_socket of the policy, else "+policy.DefaultControlSocket+")")
	config := fs.String("config", "", "policy `FILE` to read control_socket from (default "+defaultConfig+" if it exists)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	rest, c := parseArgs(fs, args)
	if c >= 0 {
		return c
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "uplinkd reload: unexpected arguments %q\n", rest)
		return exitUsage
	}
	path, code := controlPath(*socket, *config, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	out, err := daemon.Control(ctx, path, daemon.CmdReload)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd reload: %v\n", err)
		if isUnreachable(err) {
			return exitUnreachable
		}
		return exitFailure
	}
	fmt.Fprint(stdout, out)
	return exitOK
}

// controlPath resolves the control socket from the flags; code is -1 on
// success.
func controlPath(socket, config string, stderr io.Writer) (string, int) {
	if socket != "" {
		return socket, -1
	}
	if config == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			config = defaultConfig
		}
	}
	if config != "" {
		p, err := policy.Load(config)
		if err != nil {
			fmt.Fprintf(stderr, "uplinkd: reading control_socket from %s: %v\n", config, err)
			return "", exitInvalid
		}
		if p.Daemon.ControlSocket == "" {
			fmt.Fprintf(stderr, "uplinkd: %s disables the control socket (control_socket = \"\"); use kill -HUP\n", config)
			return "", exitUsage
		}
		return p.Daemon.ControlSocket, -1
	}
	return policy.DefaultControlSocket, -1
}
