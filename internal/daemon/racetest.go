//go:build race && uplinkd_racetest

package daemon

// A race-detector build for the test suites (`go build -race -tags
// uplinkd_racetest`, as daemontest.BuildRace does). The race detector
// needs cgo, and with cgo syscall.AllThreadsSyscall is unavailable, so
// this build cannot drop capabilities on every thread: it starts anyway,
// says so at start, and keeps them. Both the tag and -race are needed, so
// no production build (CGO_ENABLED=0, `make build`) and no ordinary cgo
// build can end up running without least privilege; the capability tests
// run the production binary.
const (
	builtWithCgo  = false
	raceTestBuild = true
)
