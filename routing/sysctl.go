package routing

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
)

// SysctlChange is one kernel setting uplinkd changed.
type SysctlChange struct {
	Key      string // "net.ipv4.conf.eth1.ignore_routes_with_linkdown"
	Old, New string
}

// sysctlRoot is where the namespace's sysctls live; a variable so tests can
// point it at a directory.
var sysctlRoot = "/proc/sys"

// TuneKernel sets the sysctls the policy opts into, and only those, in the
// calling thread's network namespace, and returns what it changed. log may
// be nil (discard). Settings the policy leaves nil are not read or written; a
// setting that already has the wanted value is not rewritten. Every change
// is logged at Info with its old and new value, because a sysctl that
// changes silently is a support call nobody can explain. Interfaces absent
// from the namespace are skipped (an optional gateway's link may come
// later; the daemon calls this again on reload).
func TuneKernel(k policy.Kernel, ifaces []string, log *slog.Logger) ([]SysctlChange, error) {
	log = orDiscard(log)
	type setting struct {
		key, value string
		perIface   bool
	}
	var want []setting
	if k.IgnoreRoutesWithLinkdown != nil {
		v := boolValue(*k.IgnoreRoutesWithLinkdown)
		for _, ifc := range ifaces {
			want = append(want,
				setting{"net/ipv4/conf/" + ifc + "/ignore_routes_with_linkdown", v, true},
				setting{"net/ipv6/conf/" + ifc + "/ignore_routes_with_linkdown", v, true})
		}
	}
	if k.FibMultipathHashPolicy != nil {
		v := strconv.Itoa(*k.FibMultipathHashPolicy)
		want = append(want,
			setting{"net/ipv4/fib_multipath_hash_policy", v, false},
			setting{"net/ipv6/fib_multipath_hash_policy", v, false})
	}
	if k.FibMultipathUseNeigh != nil {
		want = append(want, setting{"net/ipv4/fib_multipath_use_neigh", boolValue(*k.FibMultipathUseNeigh), false})
	}
	var changes []SysctlChange
	var errs []error
	for _, s := range want {
		path := filepath.Join(sysctlRoot, s.key)
		name := strings.ReplaceAll(s.key, "/", ".")
		b, err := os.ReadFile(path)
		if err != nil {
			if s.perIface && errors.Is(err, os.ErrNotExist) {
				log.Debug("interface absent, sysctl not set", "key", name)
				continue
			}
			errs = append(errs, fmt.Errorf("reading sysctl %s: %w", name, err))
			continue
		}
		old := strings.TrimSpace(string(b))
		if old == s.value {
			continue
		}
		if err := os.WriteFile(path, []byte(s.value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("setting sysctl %s to %s: %w", name, s.value, err))
			continue
		}
		log.Info("changed kernel setting", "key", name, "old", old, "new", s.value)
		changes = append(changes, SysctlChange{Key: name, Old: old, New: s.value})
	}
	return changes, errors.Join(errs...)
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
