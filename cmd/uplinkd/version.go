package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	register(command{name: "version", short: "print the version and build information", run: runVersion})
}

func buildVersion() (ver, commit string) {
	ver, commit = version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return ver, commit
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "", "Prints uplinkd's version, commit and Go version.", stderr)
	if c := parseFlags(fs, args); c >= 0 {
		return c
	}
	ver, commit := buildVersion()
	bi, _ := debug.ReadBuildInfo()
	gov := "unknown"
	if bi != nil {
		gov = bi.GoVersion
	}
	fmt.Fprintf(stdout, "uplinkd %s (commit %s, %s)\n", ver, commit, gov)
	return exitOK
}
