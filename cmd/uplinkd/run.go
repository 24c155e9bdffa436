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
	"github.com/uplinkd/uplinkd/policy"
)

func init() {
	register(command{name: "run", short: "run the daemon: watch gateways and keep routes pointed at live ones", run: runRun})
}

func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "--config FILE [flags]", `Runs uplinkd in the foreground: detects dead gateways and keeps the policy's
routes and rules in the kernel pointed at live ones.

It refuses to start, saying why and exiting before touching the kernel: with
3 when the policy is invalid, manages nothing, or its file is not a regular
file owned by root and writable only by root; with 2 when a hook executable
is writable by anyone but root, or without CAP_NET_ADMIN. An interface that
does not exist is not a refusal: it is logged, its gateway is down ("interface
eth3 absent") and rejoins when the interface appears; --require-interfaces
refuses instead (exit 2, and a reload is refused) for every gateway that is
not optional. Once its sockets are open it keeps only CAP_NET_ADMIN and
CAP_NET_RAW (hooks inherit that).

Signals: SIGHUP reloads the policy (as does 'uplinkd reload'); an invalid
policy is refused and the running one stays. SIGTERM and SIGINT stop the
daemon; [daemon] on_exit decides whether routes stay ("leave", the default)
or are withdrawn ("withdraw").

systemd: Type=notify. uplinkd sends READY=1 once routes are applied, STATUS=
with the healthy count, RELOADING=1 while reloading, and WATCHDOG=1 from the
health loop when WatchdogSec is set. Logs go to stderr.
Exit status: 0 after a clean stop, 1 on a runtime failure, 2 or 3 on refusal.`, stderr)
	config := fs.String("config", defaultConfig, "policy `FILE`")
	logFormat := fs.String("log-format", "", "override [daemon] log_format: text or json")
	logLevel := fs.String("log-level", "", "override [daemon] log_level: debug, info, warn or error")
	requireIfaces := fs.Bool("require-interfaces", false, "refuse to start or reload while an interface of a non-optional gateway does not exist")
	rest, c := parseArgs(fs, args)
	if c >= 0 {
		return c
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "uplinkd run: unexpected arguments %q (the policy is given with --config FILE)\n", rest)
		return exitUsage
	}
	ver, commit := buildVersion()
	errw, _ := stderr.(*os.File)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := daemon.Run(ctx, daemon.Options{
		ConfigPath:        *config,
		LogFormat:         *logFormat,
		LogLevel:          *logLevel,
		RequireInterfaces: *requireIfaces,
		Stderr:            errw,
		Build:             daemon.BuildInfo{Version: ver, Commit: commit, GoVersion: runtime.Version()},
	})
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd: %v\n", err)
		var se *daemon.StartError
		if errors.As(err, &se) {
			if invalidPolicy(*config) {
				return exitInvalid
			}
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// invalidPolicy tells a refusal for the policy itself (exit 3) from one
// for the host (exit 2) by reading the policy again as the daemon did.
func invalidPolicy(file string) bool {
	_, err := policy.LoadTrusted(file)
	return err != nil
}
