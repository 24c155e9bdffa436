package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// The BFD row: what an operator deploys instead of uplinkd where the
// gateways speak BFD. FRR in the host and in both gateways: each gateway
// announces a default route over eBGP, the host installs both as one
// multipath route, and BFD at 50 ms × 3 tears a session down, and its
// routes with it, when the peer stops answering. FRR 8.4's staticd has no
// `ip route … bfd`, so BGP carries the routes.

// frrDir is where Debian's frr package installs its daemons.
const frrDir = "/usr/lib/frr"

// bfdTimers is the BFD profile every peer uses: 50 ms × 3.
const bfdTimers = ` transmit-interval 50
  receive-interval 50
  detect-multiplier 3
`

func hostFRRConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname lab-host\n!\nbfd\n profile fast\n %s !\n!\n", bfdTimers)
	fmt.Fprintf(&b, "router bgp 65000\n bgp router-id %s\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n", netlab.Host1Addr4)
	for i, gw := range []string{netlab.GW1Addr4.String(), netlab.GW2Addr4.String()} {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s bfd profile fast\n neighbor %s timers connect 1\n", gw, 65001+i, gw, gw)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 2\n exit-address-family\n!\n")
	return b.String()
}

func gwFRRConf(n int) string {
	self, host := netlab.GW1Addr4, netlab.Host1Addr4
	if n == 2 {
		self, host = netlab.GW2Addr4, netlab.Host2Addr4
	}
	var b strings.Builder
	fmt.Fprintf(&b, "hostname lab-gw%d\n!\nbfd\n profile fast\n %s !\n!\n", n, bfdTimers)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n", 65000+n, self)
	fmt.Fprintf(&b, " neighbor %s remote-as 65000\n neighbor %s bfd profile fast\n neighbor %s timers connect 1\n", host, host, host)
	fmt.Fprintf(&b, " address-family ipv4 unicast\n  neighbor %s default-originate\n exit-address-family\n!\n", host)
	return b.String()
}

// frrSet is FRR running in the lab's host and gateways.
type frrSet struct {
	dir   string
	procs []*netlab.Proc
}

// startFRR runs zebra, bfdd and bgpd in the host and both gateways, every
// file they write (config, pid files, vty, zserv and bfdd sockets) under
// a temporary directory of the bench's own. Not -N: FRR 8.4 creates
// /run/frr/<pathspace> on the host even when every path is given, and
// nothing the lab runs may reach the host's /run. The lab reaps them by
// PID; stop does it first.
func startFRR(e *env) (*frrSet, error) {
	for _, d := range []string{"zebra", "bfdd", "bgpd"} {
		if _, err := os.Stat(filepath.Join(frrDir, d)); err != nil {
			return nil, fmt.Errorf("the BFD row needs FRR's %s: install Debian's frr package (sh scripts/setup.sh): %w", d, err)
		}
	}
	tmp, err := os.MkdirTemp("", "uplinkd-lab-frr-")
	if err != nil {
		return nil, err
	}
	f := &frrSet{dir: tmp}
	// FRR drops to user frr: it must reach the directories and write in them.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, n := range []struct {
		h    *netlab.Host
		conf string
	}{{e.tu.Host, hostFRRConf()}, {e.tu.GW1, gwFRRConf(1)}, {e.tu.GW2, gwFRRConf(2)}} {
		if err := f.start(n.h, n.conf); err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

func (f *frrSet) start(h *netlab.Host, conf string) error {
	dir := filepath.Join(f.dir, h.Name)
	if err := os.Mkdir(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	cf := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	zsock := filepath.Join(dir, "zserv.api")
	args := func(daemon string, extra ...string) []string {
		a := []string{filepath.Join(frrDir, daemon), "-i", filepath.Join(dir, daemon+".pid"), "-f", cf, "-z", zsock,
			"--vty_socket", dir, "-P", "0", "--log", "stdout"}
		return append(a, extra...)
	}
	p, err := h.Start(args("zebra")...)
	if err != nil {
		return err
	}
	f.procs = append(f.procs, p)
	if !waitFile(zsock, 10*time.Second) {
		return fmt.Errorf("[%s] zebra: no zserv socket after 10s:\n%s", h.Name, netlab.Tail(p.Output(), 2000))
	}
	for _, d := range [][]string{args("bfdd", "--bfdctl", filepath.Join(dir, "bfdd.sock")), args("bgpd")} {
		p, err := h.Start(d...)
		if err != nil {
			return err
		}
		f.procs = append(f.procs, p)
	}
	return nil
}

// stop ends every FRR daemon by its PID and removes the directory.
func (f *frrSet) stop() {
	for i := len(f.procs) - 1; i >= 0; i-- {
		_ = f.procs[i].Terminate(3 * time.Second)
	}
	os.RemoveAll(f.dir)
}

// output is every daemon's recent output, for errors.
func (f *frrSet) output() string {
	var b strings.Builder
	for _, p := range f.procs {
		b.WriteString(netlab.Tail(p.Output(), 600))
	}
	return b.String()
}

func waitFile(path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
