package l2count_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"golang.org/x/sys/unix"
)

// floodPair is two namespaces on one veth pair, a UDP sender in one and a
// receiving socket (never read: the kernel drops at its queue) in the
// other. Counting, when on, runs on a's eth0 with six keys per chain, the
// flood's one last: three dual-stack gateways on one interface, worst case.
type floodPair struct {
	a, b *nstest.Host
	c    l2count.Table
	keys []l2count.Key
}

func newFloodPair(b *testing.B, decoys int, be backend) *floodPair {
	lab := nstest.New(b)
	p := &floodPair{a: lab.Host("a"), b: lab.Host("b")}
	lab.Link(p.a, "eth0", p.b, "eth0")
	p.a.AddAddr(b, "eth0", "198.18.3.1/24")
	p.b.AddAddr(b, "eth0", "198.18.3.2/24")
	// Static neighbours: no ARP in the measured path.
	p.a.MustRun(b, "ip", "neigh", "replace", "198.18.3.2", "lladdr", macOf(b, p.b).String(), "dev", "eth0", "nud", "permanent")
	p.b.MustRun(b, "ip", "neigh", "replace", "198.18.3.1", "lladdr", macOf(b, p.a).String(), "dev", "eth0", "nud", "permanent")
	p.c = be.open(b, p.a)
	real, _ := l2count.NewKey("eth0", macOf(b, p.b), l2count.EtherTypeIPv4)
	for i := 1; i <= decoys; i++ {
		k, _ := l2count.NewKey("eth0", net.HardwareAddr{0, 0, 0x5e, 0, 0, byte(i)}, l2count.EtherTypeIPv4)
		p.keys = append(p.keys, k)
	}
	p.keys = append(p.keys, real) // sorts last: the flood walks every rule
	return p
}

func macOf(b *testing.B, h *nstest.Host) net.HardwareAddr {
	l, err := h.Handle.LinkByName("eth0")
	if err != nil {
		b.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// udpSocket opens a UDP socket inside h: bound to local:port when dst is
// invalid, else connected to dst:9.
func udpSocket(b *testing.B, h *nstest.Host, local, dst netip.Addr) int {
	var fd int
	err := h.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if !dst.IsValid() {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
			return unix.Bind(fd, &unix.SockaddrInet4{Port: 9, Addr: local.As4()})
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: dst.As4()})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	return fd
}

const emptyHooks = `table netdev uplbench {
	chain in { type filter hook ingress device "eth0" priority -10000; policy accept; }
	chain out { type filter hook egress device "eth0" priority 10000; policy accept; }
}
`

// passProg is a tcx program that only hands the frame on: attached to
// eth0 both ways, it is the hooks' own cost.
var passProg *ebpf.Program

// passHooks attaches passProg to h's eth0 both ways (on) or detaches it.
func passHooks(b *testing.B, h *nstest.Host, on bool) error {
	if passProg == nil {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Apache-2.0",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
		if err != nil {
			return err
		}
		passProg = p
	}
	l, err := h.Handle.LinkByName("eth0")
	if err != nil {
		return err
	}
	return h.Do(func() error {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			opts := link.RawAttachProgramOptions{Target: l.Attrs().Index, Program: passProg, Attach: at}
			if on {
				if err := link.RawAttachProgram(opts); err != nil {
					return err
				}
			} else if err := link.RawDetachProgram(link.RawDetachProgramOptions(opts)); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
		return nil
	})
}

func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkCountingCost measures the data-path cost of counting, with
// each backend: a flood of 64-byte UDP datagrams through the counted
// interface, in rounds that alternate counting off and on (so both modes
// share the machine's noise). ns/pkt-off and ns/pkt-on are the median CPU
// time per packet, sender's syscall to the peer's socket; ns/pkt-cost is
// their difference and loss-% the throughput a CPU-bound path loses to
// counting; the -paired figures are the median of each counted round
// minus the round before it, the steadier pair on a shared machine.
func BenchmarkCountingCost(b *testing.B) {
	type benchCase struct {
		be     backend
		dir    string
		decoys int
	}
	var cases []benchCase
	for _, be := range backends {
		for _, dir := range []string{"tx", "rx"} {
			for _, decoys := range []int{-1, 0, 5} {
				cases = append(cases, benchCase{be, dir, decoys})
			}
		}
	}
	for _, bc := range cases {
		dir := bc.dir
		// keys=0: the hooks' own cost, for comparison: empty netdev
		// chains (nftables), a program that only passes the frame on
		// (tcx).
		b.Run(fmt.Sprintf("%s/%s/keys=%d", bc.be.name, dir, bc.decoys+1), func(b *testing.B) {
			p := newFloodPair(b, max(bc.decoys, 0), bc.be)
			hooksOnly := bc.decoys < 0
			src, dst, from := p.a, p.b, netip.MustParseAddr("198.18.3.2")
			if dir == "rx" {
				src, dst, from = p.b, p.a, netip.MustParseAddr("198.18.3.1")
			}
			udpSocket(b, dst, from, netip.Addr{})
			out := udpSocket(b, src, netip.Addr{}, from)
			payload := make([]byte, 64)
			// The sending thread's CPU time, not the wall clock: on a
			// shared machine the thread waits for a core, and that is
			// not the data path's cost. (The peer's receive runs in
			// the sender's softirq context on a veth, and this kernel
			// class bills softirq time to the task it interrupts.)
			// Short rounds, and the median of each mode: a burst of
			// other work spoils a few rounds, not the figure.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			const round = 2000
			var perPkt [2][]float64
			counted := false
			b.ResetTimer()
			for sent, r := 0, 0; sent < b.N; r++ {
				on := r%2 == 1
				b.StopTimer()
				var err error
				switch {
				case hooksOnly && bc.be.name == "tcx":
					err = passHooks(b, p.a, on)
				case hooksOnly && on:
					_, err = p.a.RunInput(emptyHooks, "nft", "-f", "-")
				case hooksOnly:
					_, err = p.a.Run("nft", "delete", "table", "netdev", "uplbench")
					if r == 0 {
						err = nil // nothing to delete yet
					}
				case on:
					_, err = p.c.Sync(p.keys)
				default:
					err = p.c.Withdraw()
				}
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				n := min(round, b.N-sent)
				start := threadCPU(b)
				for i := 0; i < n; i++ {
					if _, err := unix.Write(out, payload); err != nil {
						b.Fatal(err)
					}
				}
				d := threadCPU(b) - start
				sent += n
				m := 0
				if on {
					m = 1
				}
				if on && !hooksOnly {
					b.StopTimer()
					got, err := p.c.Counts()
					if err != nil {
						b.Fatal(err)
					}
					c := got[p.keys[len(p.keys)-1]]
					counted = counted || c.Tx+c.Rx > 0
					b.StartTimer()
				}
				perPkt[m] = append(perPkt[m], float64(d.Nanoseconds())/float64(n))
			}
			b.StopTimer()
			if len(perPkt[0]) == 0 || len(perPkt[1]) == 0 {
				return // too short a run to compare (the framework's first probe)
			}
			if !counted && !hooksOnly {
				b.Fatal("the flood was not counted")
			}
			off, on := median(perPkt[0]), median(perPkt[1])
			b.ReportMetric(off, "ns/pkt-off")
			b.ReportMetric(on, "ns/pkt-on")
			b.ReportMetric(on-off, "ns/pkt-cost")
			b.ReportMetric(100*(1-off/on), "loss-%")
			// Each counted round against the round just before it: the
			// median of these paired differences cancels the machine's
			// slow drifts, which the two medians above do not.
			var diffs []float64
			for i := range min(len(perPkt[0]), len(perPkt[1])) {
				diffs = append(diffs, perPkt[1][i]-perPkt[0][i])
			}
			paired := median(diffs)
			b.ReportMetric(paired, "ns/pkt-cost-paired")
			b.ReportMetric(100*paired/(off+paired), "loss-paired-%")
		})
	}
}

// BenchmarkCounts is the poller's read: the counts of three dual-stack
// gateways on one interface: one dump of the "seen" set.
func BenchmarkCounts(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			p := newFloodPair(b, 5, be)
			if _, err := p.c.Sync(p.keys); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.c.Counts(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func median(v []float64) float64 {
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// BenchmarkSourceCounters is one poll of the detector's traffic poller on
// a shared NIC: two gateways, their MACs from the neighbour cache, their
// counts from the table.
func BenchmarkSourceCounters(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newSharedLAN(b, 2)
			c := be.open(b, s.host)
			nb, err := l2count.OpenNeighbours(s.host.NsHandle())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { nb.Close() })
			l, err := s.host.Handle.LinkByName("eth0")
			if err != nil {
				b.Fatal(err)
			}
			src := l2count.NewSource(l2count.SourceConfig{Table: c, Neighbours: nb})
			gws := []netip.Addr{netip.MustParseAddr(gwAddr4(0)), netip.MustParseAddr(gwAddr4(1))}
			s.ping(b, gwAddr4(0), 1)
			s.ping(b, gwAddr4(1), 1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := src.Counters(l.Attrs().Index, gws); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
