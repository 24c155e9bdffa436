package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	register(command{name: "version", short: "print the version and build information", run: runVersion})
}

// build is what the binary knows about itself. Without VCS information (a
// build from a tarball, or with -buildvcs=false) the module version that
// `go install module@version` records, the Go version and the build
// settings still say what was built and how.
type build struct {
	Version  string // -X main.version, else the module version, else "dev"
	Commit   string // vcs.revision, with "+dirty" when vcs.modified; "unknown" without VCS
	Time     string // vcs.time, "" without VCS
	Module   string // main module path and version
	Go       string
	Platform string
	Settings []string // CGO_ENABLED, -race, -trimpath, -tags, ...
}

func readBuild() build {
	b := build{Version: version, Commit: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Module = bi.Main.Path
	if v := bi.Main.Version; v != "" {
		b.Module += "@" + v
		if b.Version == "dev" && v != "(devel)" {
			b.Version = v
		}
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "CGO_ENABLED", "-race", "-trimpath", "-tags", "-buildmode", "GOAMD64", "GOARM64":
			if s.Value != "" {
				b.Settings = append(b.Settings, s.Key+"="+s.Value)
			}
		}
	}
	if dirty && b.Commit != "unknown" {
		b.Commit += "+dirty"
	}
	return b
}

// buildVersion is the version and commit the daemon reports in /status
// and uplinkd_build_info.
func buildVersion() (ver, commit string) {
	b := readBuild()
	return b.Version, b.Commit
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", `Prints uplinkd's version and commit, then what it was built from and how:
the module version (set by 'go install MODULE@VERSION' even without VCS
information), the commit time, the Go version and platform, and the build
settings (cgo, race detector, trimpath, tags).`, stderr)
	if rest, c := parseArgs(fs, args); c >= 0 || len(rest) > 0 {
		if c < 0 {
			fmt.Fprintf(stderr, "uplinkd version: unexpected arguments %q\n", rest)
			c = exitUsage
		}
		return c
	}
	writeVersion(stdout, readBuild())
	return exitOK
}

func writeVersion(w io.Writer, b build) {
	fmt.Fprintf(w, "uplinkd %s (commit %s, %s)\n", b.Version, b.Commit, b.Go)
	if b.Module != "" {
		fmt.Fprintf(w, "  module:   %s\n", b.Module)
	}
	if b.Time != "" {
		fmt.Fprintf(w, "  built at: %s\n", b.Time)
	}
	fmt.Fprintf(w, "  platform: %s\n", b.Platform)
	if len(b.Settings) > 0 {
		fmt.Fprintf(w, "  settings: %s\n", strings.Join(b.Settings, " "))
	}
}
