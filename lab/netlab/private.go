package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PrivateTrees are the host trees a peer started with StartPeer sees
// through a throw-away overlay: it reads the host's files there, and every
// write (new file, changed file, unlink, mkdir) lands in a tmpfs that dies
// with its mount namespace. These are the trees where the daemons we run as
// peers have compiled-in paths no flag moves: FRR's /run/frr, /var/lib/frr
// and /etc/frr (ospfd-gr.json, -N pathspace dirs), keepalived's /run pid
// files, dnsmasq's /run/dnsmasq and /var/lib/misc leases, radvd's /run/radvd,
// pppd's /run/ppp and /etc/ppp, DHCP clients' /var/lib/dhcp*, /run/dhcpcd
// and the resolv.conf their scripts rewrite, and /var/log for the ones that
// log to files. /var/run is a symlink to /run on every system we support.
var PrivateTrees = []string{"/etc", "/run", "/var/lib", "/var/log"}

// privateScript runs as `sh -c privateScript sh SCRATCH ARGV...` inside a
// mount namespace of its own with private propagation (see PeerArgs), so no
// mount it makes is seen by the host or by any other namespace. It mounts a
// tmpfs on SCRATCH to hold the overlays' upper and work directories (a
// tmpfs, because an overlay's upper directory may not live on an overlay
// and CI's /tmp may be one), overlays each of PrivateTrees (the %s verb), then
// execs ARGV, so the PID the harness holds is the daemon's.
const privateScript = `set -e
s=$1; shift
mount -t tmpfs -o mode=0700,size=64m upl-private "$s"
i=0
for d in %s; do
	i=$((i+1))
	mkdir "$s/u$i" "$s/w$i"
	mount -t overlay upl-private -o "lowerdir=$d,upperdir=$s/u$i,workdir=$s/w$i" "$d"
done
exec "$@"`

// PeerArgs returns the argv that runs args inside the namespace in a
// private mount namespace whose PrivateTrees are throw-away overlays;
// scratch is an empty directory of the caller's (a test's temp dir), used
// only as the mount point of the overlays' tmpfs. The host's mount table is
// never changed: `ip netns exec` already enters a mount namespace of its own
// (slave to the host's), and `unshare --propagation private` cuts even that
// link before anything is mounted.
func (h *Host) PeerArgs(scratch string, args []string) ([]string, error) {
	if !filepath.IsAbs(scratch) {
		return nil, fmt.Errorf("peer scratch dir %q is not absolute", scratch)
	}
	for _, tree := range PrivateTrees {
		// Files the caller hands the daemon (config, pid, sockets) must stay
		// visible to the caller: under an overlaid tree they would vanish
		// into the overlay.
		if scratch == tree || strings.HasPrefix(scratch, tree+"/") {
			return nil, fmt.Errorf("peer scratch dir %s is under %s, which peers see through an overlay: set TMPDIR elsewhere", scratch, tree)
		}
	}
	if ents, err := os.ReadDir(scratch); err != nil {
		return nil, fmt.Errorf("peer scratch dir: %w", err)
	} else if len(ents) != 0 {
		return nil, fmt.Errorf("peer scratch dir %s is not empty", scratch)
	}
	script := fmt.Sprintf(privateScript, strings.Join(PrivateTrees, " "))
	argv := []string{"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", script, "sh", scratch}
	return h.ExecArgs(append(argv, args...)), nil
}

// StartPeer is Start for a peer daemon (FRR, keepalived, dnsmasq, radvd,
// pppd, a DHCP client): it runs in a private mount namespace where /etc,
// /run, /var/lib and /var/log are throw-away overlays (PeerArgs), so nothing
// it writes by a compiled-in path reaches the host, even when it ignores the
// flags that move its files. Pass it the test's own paths for everything the
// test must see (config, pid files, sockets, leases): those stay on the
// host's filesystem. scratch is an empty directory used as a mount point.
// The PID returned is the daemon's; stop it as any Start'ed process.
func (h *Host) StartPeer(scratch string, args ...string) (*Proc, error) {
	argv, err := h.PeerArgs(scratch, args)
	if err != nil {
		return nil, fmt.Errorf("[%s] starting %s: %w", h.Name, strings.Join(args, " "), err)
	}
	return h.startArgv(nil, argv, args)
}
