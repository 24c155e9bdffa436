//go:build cgo && !(race && uplinkd_racetest)

package daemon

// builtWithCgo: AllThreadsSyscall refuses to work in cgo binaries, so the
// capability drop would fail; start-up refuses such a build up front.
const (
	builtWithCgo  = true
	raceTestBuild = false
)
