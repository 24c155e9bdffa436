package l2count_test

import (
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/detector/l2count/l2counttest"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// attached returns the names of the programs attached with tcx to
// iface in h, per direction ("rx", "tx"), in their order.
func attached(t *testing.T, h *nstest.Host, iface string) map[string][]string {
	t.Helper()
	l, err := h.Handle.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	st, err := l2counttest.TCXState(h.Do, l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	return st.Programs
}

// operatorProgram is someone else's tcx program on ingress: it counts
// every frame it sees in its own map and passes it on. Seeing frames
// after uplinkd's program proves that counting hands every frame on.
type operatorProgram struct {
	prog *ebpf.Program
	hits *ebpf.Map
}

func attachOperator(t *testing.T, h *nstest.Host, iface, name string, anchor link.Anchor) *operatorProgram {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R1, 1),
			asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TCX_NEXT
			asm.Return(),
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	l, err := h.Handle.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Do(func() error {
		return link.RawAttachProgram(link.RawAttachProgramOptions{Target: l.Attrs().Index, Program: p,
			Attach: ebpf.AttachTCXIngress, Anchor: anchor})
	}); err != nil {
		t.Fatal(err)
	}
	return &operatorProgram{prog: p, hits: m}
}

func (o *operatorProgram) count(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	if err := o.hits.Lookup(uint32(0), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// ingressPackets is what the operator's legacy tc ingress (clsact) saw.
func ingressPackets(t *testing.T, h *nstest.Host) int {
	t.Helper()
	out := h.MustRun(t, "tc", "-s", "qdisc", "show", "dev", "eth0", "ingress")
	m := regexp.MustCompile(`Sent \d+ bytes (\d+) pkt`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ingress statistics in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A restart adopts the attached programs and their counts with zero
// writes; a MAC change rewrites two keys and attaches nothing.
func TestBPFRestartAdoptsWithNoWrites(t *testing.T) {
	s := newSharedLAN(t, 2)
	gw1, gw2 := s.key(t, 0, l2count.EtherTypeIPv4), s.key(t, 1, l2count.EtherTypeIPv4)
	first := openBPF(t, s.host)
	if n := mustSync(t, first, gw1); n != 4 { // two keys, two attaches
		t.Errorf("first Sync wrote %d, want 4 (2 keys, 2 attaches)", n)
	}
	s.ping(t, gwAddr4(0), 5)
	before := mustCounts(t, first)[gw1]
	first.Close()

	again := openBPF(t, s.host)
	if n := mustSync(t, again, gw1); n != 0 {
		t.Errorf("Sync after a restart wrote %d, want 0", n)
	}
	want := map[string][]string{"rx": {"uplinkd_rx"}, "tx": {"uplinkd_tx"}}
	if diff := cmp.Diff(want, attached(t, s.host, "eth0")); diff != "" {
		t.Errorf("programs after a restart (-want +got):\n%s", diff)
	}
	s.ping(t, gwAddr4(0), 3)
	after := mustCounts(t, again)[gw1]
	if after.Tx != before.Tx+3 || after.Rx != before.Rx+3 {
		t.Errorf("counts across the restart: %+v then %+v, want 3 more each way", before, after)
	}

	// The neighbour's MAC changes: its keys are swapped, the programs
	// stay.
	if n := mustSync(t, again, gw2); n != 4 {
		t.Errorf("Sync after a MAC change wrote %d, want 4 (2 keys in, 2 out)", n)
	}
	s.ping(t, gwAddr4(1), 2)
	if got := mustCounts(t, again); got[gw2].Tx != 2 || got[gw1].Tx != 0 {
		t.Errorf("counts after the change = %+v, want gw2 counted, gw1 gone", got)
	}
}

// An operator's tcx programs before and after uplinkd's, its legacy tc
// ingress and its nftables table see every frame while uplinkd counts,
// and stay as they were when uplinkd withdraws.
func TestBPFLeavesOthersAlone(t *testing.T) {
	s := newSharedLAN(t, 1)
	h := s.host
	h.MustRun(t, "tc", "qdisc", "add", "dev", "eth0", "clsact")
	h.MustRun(t, "tc", "filter", "add", "dev", "eth0", "ingress", "protocol", "ip", "prio", "7", "u32", "match", "u32", "0", "0")
	h.MustRun(t, "nft", "add", "table", "netdev", "operator")
	filters := h.MustRun(t, "tc", "filter", "show", "dev", "eth0", "ingress")
	ruleset := h.MustRun(t, "nft", "list", "ruleset")
	head := attachOperator(t, h, "eth0", "op_head", link.Head())
	tail := attachOperator(t, h, "eth0", "op_tail", link.Tail())

	c := openBPF(t, s.host)
	gw := s.key(t, 0, l2count.EtherTypeIPv4)
	mustSync(t, c, gw)
	want := map[string][]string{"rx": {"uplinkd_rx", "op_head", "op_tail"}, "tx": {"uplinkd_tx"}}
	if diff := cmp.Diff(want, attached(t, h, "eth0")); diff != "" {
		t.Errorf("programs while counting (-want +got):\n%s", diff)
	}
	h0, t0, i0 := head.count(t), tail.count(t), ingressPackets(t, h)
	s.ping(t, gwAddr4(0), 10)
	if got := mustCounts(t, c)[gw]; got.Rx != 10 {
		t.Errorf("uplinkd counted %+v, want 10 received", got)
	}
	if dh, dt, di := head.count(t)-h0, tail.count(t)-t0, ingressPackets(t, h)-i0; dh < 10 || dt < 10 || di < 10 {
		t.Errorf("the operator's programs saw %d and %d frames, its tc ingress %d, of 10 replies", dh, dt, di)
	}

	if err := c.Withdraw(); err != nil {
		t.Fatal(err)
	}
	want = map[string][]string{"rx": {"op_head", "op_tail"}}
	if diff := cmp.Diff(want, attached(t, h, "eth0")); diff != "" {
		t.Errorf("programs after Withdraw (-want +got):\n%s", diff)
	}
	if got := h.MustRun(t, "tc", "filter", "show", "dev", "eth0", "ingress"); got != filters {
		t.Errorf("tc filters changed:\n%s\nwas:\n%s", got, filters)
	}
	if got := h.MustRun(t, "nft", "list", "ruleset"); got != ruleset {
		t.Errorf("nftables ruleset changed:\n%s\nwas:\n%s", got, ruleset)
	}
}

// An uplinkd program of another build (same name, other code) is found
// at Open and detached by the first Sync, in favour of this build's.
func TestBPFReplacesStaleProgram(t *testing.T) {
	s := newSharedLAN(t, 1)
	attachOperator(t, s.host, "eth0", "uplinkd_rx", link.Head()) // "ours", of another build
	c := openBPF(t, s.host)
	gw := s.key(t, 0, l2count.EtherTypeIPv4)
	if n := mustSync(t, c, gw); n != 5 {
		t.Errorf("Sync wrote %d, want 5 (2 keys, 2 attaches, 1 stale detach)", n)
	}
	got := attached(t, s.host, "eth0")
	for _, names := range got {
		sort.Strings(names)
	}
	want := map[string][]string{"rx": {"uplinkd_rx"}, "tx": {"uplinkd_tx"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("programs (-want +got):\n%s", diff)
	}
	s.ping(t, gwAddr4(0), 3)
	if c := mustCounts(t, c)[gw]; c.Rx != 3 {
		t.Errorf("counted %+v after 3 pings, want 3 received (this build's program)", c)
	}
	if n := mustSync(t, c, gw); n != 0 {
		t.Errorf("a second Sync wrote %d, want 0", n)
	}
}
