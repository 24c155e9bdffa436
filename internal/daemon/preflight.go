package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/securefile"
	"github.com/uplinkd/uplinkd/policy"
)

// checkRootOnly refuses a file that anyone but root could change: hooks run
// as root, and the policy decides what they run, so whoever can write
// either can run code as root. securefile checks every component of the
// path as written, including the directories that hold symlinks.
func checkRootOnly(what, path string) error {
	f, err := securefile.Open(path, securefile.Trusted)
	if err != nil {
		return fmt.Errorf("%s: %w; it decides what runs as root", what, err)
	}
	return f.Close()
}

// checkPolicyFiles checks every hook executable.
func checkPolicyFiles(p *policy.Policy) error {
	var errs []error // the policy file itself was checked as it was read (policy.LoadTrusted)
	for _, h := range p.Hooks {
		if err := checkRootOnly(fmt.Sprintf("hook %q: executable", h.Name), h.Command[0]); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Access(h.Command[0], unix.X_OK); err != nil {
			errs = append(errs, fmt.Errorf("hook %q: executable %s is not executable: %w", h.Name, h.Command[0], err))
		}
	}
	return errors.Join(errs...)
}

// AbsentInterfaces lists the gateways of p whose interface does not exist in this network namespace. An absent
// interface is not an error: its gateway is down ("interface eth3
// absent") until the interface appears, by name, with whatever index.
// Uplinks come late (PPP, VLANs, bonds, WireGuard, USB modems), and a
// daemon that refused to start would leave every other uplink unmanaged.
func AbsentInterfaces(p *policy.Policy) []*policy.Gateway {
	var out []*policy.Gateway
	absent := map[string]bool{}
	for _, g := range p.Gateways {
		seen, ok := absent[g.Interface]
		if !ok {
			_, err := net.InterfaceByName(g.Interface)
			seen = err != nil
			absent[g.Interface] = seen
		}
		if seen {
			out = append(out, g)
		}
	}
	return out
}

// checkInterfaces is the strict form operators ask for with
// --require-interfaces: a missing interface of a gateway that is not
// optional refuses the policy, at start and on reload, so that a typo is
// caught where a fixed set of interfaces is known to exist.
func checkInterfaces(p *policy.Policy) error {
	var errs []error
	seen := map[string]bool{}
	for _, g := range p.Gateways {
		if g.Optional || seen[g.Interface] {
			continue
		}
		seen[g.Interface] = true
		if _, err := net.InterfaceByName(g.Interface); err != nil {
			if strings.Contains(err.Error(), "no such network interface") {
				errs = append(errs, fmt.Errorf("gateway %q: interface %s does not exist (--require-interfaces is set; set optional = true if it may appear later)", g.Name, g.Interface))
			} else {
				errs = append(errs, fmt.Errorf("gateway %q: looking up interface %s: %w", g.Name, g.Interface, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkPrivileges refuses to run without CAP_NET_ADMIN, which every route
// and rule write needs: better now than at the first gateway failure.
func checkPrivileges() error {
	ok, err := HasCapability(unix.CAP_NET_ADMIN)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("missing CAP_NET_ADMIN: uplinkd must run as root or with CAP_NET_ADMIN and CAP_NET_RAW to change routes and send probes")
	}
	return nil
}

// loadChecked reads and validates a policy and everything it names;
// requireIfaces refuses a missing interface (checkInterfaces).
func loadChecked(path string, requireIfaces bool) (*policy.Policy, error) {
	p, err := policy.LoadTrusted(path)
	if err != nil {
		var perrs policy.Errors
		if errors.As(err, &perrs) {
			lines := make([]string, len(perrs))
			for i, e := range perrs {
				lines[i] = e.Error()
			}
			return nil, fmt.Errorf("policy %s is invalid:\n  %s", path, strings.Join(lines, "\n  "))
		}
		return nil, err
	}
	errs := []error{checkPolicyFiles(p), checkWebConfig(p)}
	if requireIfaces {
		errs = append(errs, checkInterfaces(p))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// warnAbsent logs each absent interface once per load (start, reload).
func warnAbsent(log *slog.Logger, p *policy.Policy) {
	for _, g := range AbsentInterfaces(p) {
		log.Warn("interface absent; the gateway is down until it appears", "gateway", g.Name, "iface", g.Interface)
	}
}
