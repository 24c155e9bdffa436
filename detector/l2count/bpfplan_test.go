package l2count

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// both returns k's map keys on interface index, both directions.
func both(index int, ks ...Key) []BPFKey {
	var out []BPFKey
	for _, k := range ks {
		out = append(out, BPFKey{index, k, Rx}, BPFKey{index, k, Tx})
	}
	return out
}

// bpfHaveOf is what an earlier Sync of keys on index would have left.
func bpfHaveOf(index int, ks ...Key) BPFHave {
	h := BPFHave{Ours: map[Hook]bool{}, Stale: map[Hook]bool{}, Keys: map[BPFKey]bool{}}
	for _, k := range both(index, ks...) {
		h.Keys[k] = true
		h.Ours[Hook{k.Index, k.Dir}] = true
	}
	return h
}

func TestPlanBPF(t *testing.T) {
	gw1, gw2 := key("eth0", 1, EtherTypeIPv4), key("eth0", 2, EtherTypeIPv4)
	gw1new := key("eth0", 0x11, EtherTypeIPv4)
	wan := key("eth1", 9, EtherTypeIPv6)
	staleAt := func(h BPFHave, hooks ...Hook) BPFHave {
		for _, x := range hooks {
			h.Stale[x] = true
		}
		return h
	}
	// A previous run's key, read back from the map without its name.
	orphan := BPFKey{Index: 2, Key: Key{MAC: gw2.MAC, EtherType: EtherTypeIPv4}, Dir: Rx}
	withOrphan := bpfHaveOf(2, gw1)
	withOrphan.Keys[orphan] = true
	tests := []struct {
		name string
		want []BPFKey
		have BPFHave
		ops  []string
	}{
		{"nothing wanted, nothing there", nil, bpfHaveOf(0), nil},
		{"first start: keys before attaches", both(2, gw1), bpfHaveOf(0), []string{
			"put key 2 eth0 02:00:00:00:00:01 ip rx", "put key 2 eth0 02:00:00:00:00:01 ip tx",
			"attach 2 rx", "attach 2 tx"}},
		{"restart, unchanged: nothing", both(2, gw1, gw2), bpfHaveOf(2, gw1, gw2), nil},
		{"MAC change: new keys in, old out, programs stay", both(2, gw1new), bpfHaveOf(2, gw1), []string{
			"put key 2 eth0 02:00:00:00:00:11 ip rx", "put key 2 eth0 02:00:00:00:00:11 ip tx",
			"delete key 2 eth0 02:00:00:00:00:01 ip rx", "delete key 2 eth0 02:00:00:00:00:01 ip tx"}},
		{"second interface", append(both(2, gw1), both(3, wan)...), bpfHaveOf(2, gw1), []string{
			"put key 3 eth1 02:00:00:00:00:09 ip6 rx", "put key 3 eth1 02:00:00:00:00:09 ip6 tx",
			"attach 3 rx", "attach 3 tx"}},
		{"a gateway leaves: its keys out, the programs stay", both(2, gw1), bpfHaveOf(2, gw1, gw2), []string{
			"delete key 2 eth0 02:00:00:00:00:02 ip rx", "delete key 2 eth0 02:00:00:00:00:02 ip tx"}},
		{"interface gone from the policy", both(3, wan), bpfHaveOf(2, gw1), []string{
			"put key 3 eth1 02:00:00:00:00:09 ip6 rx", "put key 3 eth1 02:00:00:00:00:09 ip6 tx",
			"attach 3 rx", "attach 3 tx",
			"delete key 2 eth0 02:00:00:00:00:01 ip rx", "delete key 2 eth0 02:00:00:00:00:01 ip tx",
			"detach 2 rx", "detach 2 tx"}},
		{"a previous run's key no longer wanted", both(2, gw1), withOrphan, []string{
			"delete key 2  02:00:00:00:00:02 ip rx"}},
		{"another build's program: detached last", both(2, gw1), staleAt(bpfHaveOf(2, gw1), Hook{2, Rx}), []string{
			"detach stale 2 rx"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, o := range PlanBPF(tc.want, tc.have) {
				got = append(got, o.String())
			}
			if diff := cmp.Diff(tc.ops, got); diff != "" {
				t.Errorf("PlanBPF (-want +got):\n%s", diff)
			}
		})
	}
}
