package l2count_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uplinkd/uplinkd/detector/l2count"
	"github.com/uplinkd/uplinkd/internal/nstest"
)

// nftMonitor watches every nftables change in a namespace. Between two
// marks, the changes it saw are exactly the writes made in between: the
// marks are throwaway tables, so the monitor is known to be listening.
type nftMonitor struct {
	h   *nstest.Host
	out func() string
	n   int
}

func startNftMonitor(t *testing.T, h *nstest.Host) *nftMonitor {
	t.Helper()
	cmd := h.Start(t, "nft", "monitor")
	return &nftMonitor{h: h, out: func() string { return h.Output(cmd) }}
}

// mark adds and deletes a marker table until the monitor prints its
// deletion (at most 5 s: the monitor may not be listening yet); it
// returns the monitor's output offset after the mark.
func (m *nftMonitor) mark(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.n++
		name := fmt.Sprintf("uplmark%d", m.n)
		m.h.MustRun(t, "nft", "add", "table", "netdev", name)
		m.h.MustRun(t, "nft", "delete", "table", "netdev", name)
		for wait := time.Now().Add(200 * time.Millisecond); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			if i := strings.Index(m.out(), "delete table netdev "+name); i >= 0 {
				return i + len("delete table netdev "+name)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nft monitor never showed a mark:\n%s", m.out())
		}
	}
}

// between returns what the monitor printed between two marks, the second
// mark's own lines excluded.
func (m *nftMonitor) between(t *testing.T, from, to int) string {
	t.Helper()
	s := m.out()[from:to]
	// The marks' own lines, and the generation lines of their
	// transactions (made by nft), are not writes; anything else is.
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "table netdev uplmark") &&
			!(strings.HasPrefix(l, "# new generation") && strings.HasSuffix(l, "(nft)")) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// A restarted daemon adopts its table: zero writes seen by the kernel, and
// the counters go on from where they were.
func TestAdoptWithZeroWrites(t *testing.T) {
	s := newSharedLAN(t, 2)
	want := []l2count.Key{s.key(t, 0, l2count.EtherTypeIPv4), s.key(t, 1, l2count.EtherTypeIPv4), s.key(t, 0, l2count.EtherTypeIPv6)}
	first := open(t, s.host)
	if n := mustSync(t, first, want...); n == 0 {
		t.Fatal("first Sync wrote nothing")
	}
	s.ping(t, gwAddr4(0), 4)
	before := mustCounts(t, first)
	first.Close()

	mon := startNftMonitor(t, s.host)
	from := mon.mark(t)
	again := open(t, s.host)
	// The keys in another order: adoption compares sets, not lists.
	if n := mustSync(t, again, want[2], want[0], want[1]); n != 0 {
		t.Errorf("adopting Sync planned %d writes, want 0", n)
	}
	after := mustCounts(t, again)
	to := mon.mark(t)
	if seen := mon.between(t, from, to); seen != "" {
		t.Errorf("adoption wrote to the kernel:\n%s", seen)
	}
	if diff := cmp.Diff(packets(before), packets(after)); diff != "" {
		t.Errorf("counts after adoption (-before +after):\n%s", diff)
	}
	s.ping(t, gwAddr4(0), 3)
	if g := mustCounts(t, again)[want[0]]; g.Tx != before[want[0]].Tx+3 {
		t.Errorf("gw1 tx after 3 more pings = %d, want %d", g.Tx, before[want[0]].Tx+3)
	}
}

func packets(m map[l2count.Key]l2count.Counts) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for k, c := range m {
		out[k.String()] = [2]uint64{c.Tx, c.Rx}
	}
	return out
}

var nftCounterRE = regexp.MustCompile(`packets \d+ bytes \d+`)

// operatorState is the operator's nftables tables and tc objects on eth0,
// with counter values blanked (the operator's counters are meant to move).
func operatorState(t *testing.T, h *nstest.Host) string {
	t.Helper()
	var sb strings.Builder
	for _, args := range [][]string{
		{"nft", "list", "table", "inet", "oper"},
		{"nft", "list", "table", "netdev", "operdev"},
		{"tc", "qdisc", "show", "dev", "eth0"},
		{"tc", "filter", "show", "dev", "eth0", "ingress"},
		{"tc", "filter", "show", "dev", "eth0", "egress"},
	} {
		fmt.Fprintf(&sb, "# %s\n%s\n", strings.Join(args, " "), h.MustRun(t, args...))
	}
	return nftCounterRE.ReplaceAllString(sb.String(), "packets N bytes N")
}

const operatorRuleset = `
table inet oper {
	chain input { type filter hook input priority 0; policy accept; counter; }
}
table netdev operdev {
	chain in { type filter hook ingress device "eth0" priority -10000; policy accept; counter; }
	chain out { type filter hook egress device "eth0" priority 10000; policy accept; counter; }
}
`

// An operator's nftables ruleset, including netdev chains on the very
// interface and at the very priorities uplinkd uses, and a tc clsact qdisc
// with filters, stay exactly as they were through install, traffic, a MAC
// change and withdrawal, and keep seeing the traffic.
func TestOperatorRulesetAndQdiscUntouched(t *testing.T) {
	s := newSharedLAN(t, 2)
	if out, err := s.host.RunInput(operatorRuleset, "nft", "-f", "-"); err != nil {
		t.Fatalf("installing the operator's ruleset: %v\n%s", err, out)
	}
	s.host.MustRun(t, "tc", "qdisc", "add", "dev", "eth0", "clsact")
	s.host.MustRun(t, "tc", "filter", "add", "dev", "eth0", "ingress", "prio", "10", "protocol", "all", "u32", "match", "u32", "0", "0", "flowid", "1:1")
	s.host.MustRun(t, "tc", "filter", "add", "dev", "eth0", "egress", "prio", "10", "protocol", "all", "u32", "match", "u32", "0", "0", "flowid", "1:1")
	before := operatorState(t, s.host)
	opBefore := s.host.MustRun(t, "nft", "list", "table", "netdev", "operdev")

	c := open(t, s.host)
	k1 := s.key(t, 0, l2count.EtherTypeIPv4)
	mustSync(t, c, k1, s.key(t, 1, l2count.EtherTypeIPv4))
	s.ping(t, gwAddr4(0), 5)
	if g := mustCounts(t, c)[k1]; g.Tx != 5 || g.Rx != 5 {
		t.Errorf("gw1 behind the operator's chains = %+v, want 5/5", g)
	}
	k1b, _ := l2count.NewKey("eth0", []byte{0x02, 0, 0, 0, 0xee, 0x01}, l2count.EtherTypeIPv4)
	mustSync(t, c, k1b, s.key(t, 1, l2count.EtherTypeIPv4))
	if err := c.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, operatorState(t, s.host)); diff != "" {
		t.Errorf("operator's ruleset or qdisc changed (-before +after):\n%s", diff)
	}
	if opAfter := s.host.MustRun(t, "nft", "list", "table", "netdev", "operdev"); opAfter == opBefore {
		t.Errorf("the operator's own counters did not see the traffic:\n%s", opAfter)
	}
}

// A gateway's new MAC replaces its rules in one transaction (two adds, two
// deletes); the new MAC is counted from then on and the old one is gone.
func TestMACChange(t *testing.T) {
	s := newSharedLAN(t, 1)
	c := open(t, s.host)
	old := s.key(t, 0, l2count.EtherTypeIPv4)
	mustSync(t, c, old)
	s.ping(t, gwAddr4(0), 3)

	s.gws[0].MustRun(t, "ip", "link", "set", "eth0", "address", "02:00:5e:00:01:77")
	s.host.MustRun(t, "ip", "neigh", "flush", "dev", "eth0")
	nu := s.key(t, 0, l2count.EtherTypeIPv4)
	if nu == old {
		t.Fatal("the gateway's MAC did not change")
	}
	if n := mustSync(t, c, nu); n != 4 {
		t.Errorf("Sync after the MAC change made %d writes, want 4 (two adds, two deletes)", n)
	}
	s.ping(t, gwAddr4(0), 4)
	got := mustCounts(t, c)
	if _, ok := got[old]; ok {
		t.Errorf("old MAC still counted: %+v", got)
	}
	if g := got[nu]; g.Tx != 4 || g.Rx != 4 {
		t.Errorf("new MAC after 4 pings = %+v", g)
	}
	// The operator sees whose rules they are and what they count.
	if list := s.host.MustRun(t, "nft", "list", "table", "netdev", "uplinkd"); !strings.Contains(list, `comment "uplinkd eth0 02:00:5e:00:01:77 ip"`) ||
		strings.Contains(list, old.HardwareAddr().String()) {
		t.Errorf("nft list after the MAC change:\n%s", list)
	}
}

// Withdraw deletes uplinkd's table and nothing else; an operator's
// `nft flush ruleset` (what a reload of nftables.service does) loses the
// counts, which Counts shows and the next Sync restores.
func TestWithdrawAndFlushedRuleset(t *testing.T) {
	s := newSharedLAN(t, 1)
	c := open(t, s.host)
	k := s.key(t, 0, l2count.EtherTypeIPv4)
	mustSync(t, c, k)

	s.host.MustRun(t, "nft", "flush", "ruleset")
	if got := mustCounts(t, c); len(got) != 0 {
		t.Errorf("Counts after the ruleset was flushed = %+v, want nothing", got)
	}
	if n := mustSync(t, c, k); n == 0 {
		t.Error("Sync after a flushed ruleset wrote nothing")
	}
	s.ping(t, gwAddr4(0), 2)
	if g := mustCounts(t, c)[k]; g.Tx != 2 {
		t.Errorf("restored counting after 2 pings = %+v", g)
	}

	s.host.MustRun(t, "nft", "add", "table", "inet", "oper")
	if err := c.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if err := c.Withdraw(); err != nil {
		t.Fatalf("second Withdraw: %v", err)
	}
	if tables := s.host.MustRun(t, "nft", "list", "tables"); strings.TrimSpace(tables) != "table inet oper" {
		t.Errorf("tables after Withdraw:\n%s\nwant only the operator's", tables)
	}
}
