package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/uplinkd/uplinkd/internal/daemon"
)

func init() {
	register(command{name: "run", short: "run the daemon: watch gateways and keep routes pointed at live ones", run: runRun})
}

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "--config FILE [flags]", `Runs uplinkd in the foreground: detects dead gateways and keeps the policy's
routes and rules in the kernel pointed at live ones.

It refuses to start, saying why and exiting 2 before touching the kernel, when
the policy is invalid, when the policy file or a hook executable is writable
by anyone but root, when a non-optional interface does not exist, or without
CAP_NET_ADMIN. Once its sockets are open it keeps only CAP_NET_ADMIN and
CAP_NET_RAW (hooks inherit that).

Signals: SIGHUP reloads the policy (as does 'uplinkd reload'); an invalid
policy is refused and the running one stays. SIGTERM and SIGINT stop the
daemon; [daemon] on_exit decides whether routes stay ("leave", the default)
or are withdrawn ("withdraw").

systemd: Type=notify. uplinkd sends READY=1 once routes are applied, STATUS=
with the healthy count, RELOADING=1 while reloading, and WATCHDOG=1 from the
health loop when WatchdogSec is set. Logs go to stderr.
Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on refusal.`, stderr)
	config := fs.String("config", "/etc/uplinkd/uplinkd.toml", "policy `FILE`")
	logFormat := fs.String("log-format", "", "override [daemon] log_format: text or json")
	logLevel := fs.String("log-level", "", "override [daemon] log_level: debug, info, warn or error")
	if c := parseFlags(fs, args); c >= 0 {
		return c
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "uplinkd run: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	ver, commit := buildVersion()
	errw, _ := stderr.(*os.File)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := daemon.Run(ctx, daemon.Options{
		ConfigPath: *config,
		LogFormat:  *logFormat,
		LogLevel:   *logLevel,
		Stderr:     errw,
		Build:      daemon.BuildInfo{Version: ver, Commit: commit, GoVersion: runtime.Version()},
	})
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd: %v\n", err)
		var se *daemon.StartError
		if errors.As(err, &se) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}
