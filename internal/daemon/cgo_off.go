//go:build !cgo

package daemon

const (
	builtWithCgo  = false
	raceTestBuild = false
)
