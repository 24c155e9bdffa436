package l2count

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func key(iface string, last byte, et uint16) Key {
	return Key{Iface: iface, MAC: [6]byte{2, 0, 0, 0, 0, last}, EtherType: et}
}

// have builds the table state an earlier Sync of keys would have left.
func haveOf(keys ...Key) Have {
	h := Have{Table: true, Chains: map[Chain]bool{}}
	handle := uint64(10)
	for _, k := range keys {
		for _, d := range []Dir{Rx, Tx} {
			c := Chain{k.Iface, d}
			h.Chains[c] = true
			h.Rules = append(h.Rules, Rule{Chain: c, Key: k, Handle: handle, OK: true})
			handle++
		}
	}
	return h
}

func TestPlan(t *testing.T) {
	gw1 := key("eth0", 1, EtherTypeIPv4)
	gw1v6 := key("eth0", 1, EtherTypeIPv6)
	gw2 := key("eth0", 2, EtherTypeIPv4)
	gw1new := key("eth0", 0x11, EtherTypeIPv4)
	wan := key("eth1", 9, EtherTypeIPv4)
	tests := []struct {
		name string
		want []Key
		have Have
		ops  []string
	}{
		{"nothing wanted, nothing there", nil, Have{}, nil},
		{"nothing wanted: the table goes", nil, haveOf(gw1), []string{"delete table"}},
		{"first install", []Key{gw1}, Have{}, []string{
			"add table", "add set", "add chain rx_eth0", "add chain tx_eth0",
			"add rule rx_eth0 eth0 02:00:00:00:00:01 ip", "add rule tx_eth0 eth0 02:00:00:00:00:01 ip"}},
		{"adoption: nothing to write", []Key{gw2, gw1v6, gw1}, haveOf(gw1, gw1v6, gw2), nil},
		{"MAC change: add the new rules before deleting the old", []Key{gw1new, gw2}, haveOf(gw1, gw2), []string{
			"add rule rx_eth0 eth0 02:00:00:00:00:11 ip", "add rule tx_eth0 eth0 02:00:00:00:00:11 ip",
			"delete rule rx_eth0 handle 10", "delete rule tx_eth0 handle 11"}},
		{"an interface leaves", []Key{gw1}, haveOf(gw1, wan), []string{"delete chain rx_eth1", "delete chain tx_eth1"}},
		{"an edited rule is replaced", []Key{gw1}, func() Have {
			h := haveOf(gw1)
			h.Rules[1].OK = false
			return h
		}(), []string{"add rule tx_eth0 eth0 02:00:00:00:00:01 ip", "delete rule tx_eth0 handle 11"}},
		{"a duplicate rule is deleted", []Key{gw1}, func() Have {
			h := haveOf(gw1)
			h.Rules = append(h.Rules, Rule{Chain: Chain{"eth0", Rx}, Key: gw1, Handle: 99, OK: true})
			return h
		}(), []string{"delete rule rx_eth0 handle 99"}},
		{"a chain hooked otherwise is rebuilt in the same transaction", []Key{gw1}, func() Have {
			h := haveOf(gw1)
			h.Chains[Chain{"eth0", Tx}] = false
			return h
		}(), []string{"delete chain tx_eth0", "add chain tx_eth0", "add rule tx_eth0 eth0 02:00:00:00:00:01 ip"}},
		{"a broken table is rebuilt", []Key{gw1}, Have{Table: true, Broken: true}, []string{
			"delete table", "add table", "add set", "add chain rx_eth0", "add chain tx_eth0",
			"add rule rx_eth0 eth0 02:00:00:00:00:01 ip", "add rule tx_eth0 eth0 02:00:00:00:00:01 ip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := Plan(tt.want, tt.have)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range ops {
				got = append(got, o.String())
			}
			if diff := cmp.Diff(tt.ops, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUserDataRoundTrip(t *testing.T) {
	for _, k := range []Key{key("eth0", 1, EtherTypeIPv4), key("bond0.100", 0xfe, EtherTypeIPv6)} {
		got, ok := parseUserData(ruleUserData(k))
		if !ok || got != k {
			t.Errorf("parseUserData(ruleUserData(%v)) = %v, %v", k, got, ok)
		}
	}
	comment := func(s string) []byte { return append([]byte{0, byte(len(s) + 1)}, s+"\x00"...) }
	for _, bad := range [][]byte{nil, []byte("uplinkd eth0 02:00:00:00:00:01 ip"), comment("uplinkd"), comment("uplinkd eth0 zz ip"),
		comment("uplinkd eth0 02:00:00:00:00:01 arp"), comment("operator eth0 02:00:00:00:00:01 ip")} {
		if k, ok := parseUserData(bad); ok {
			t.Errorf("parseUserData(%q) = %v, want refusal", bad, k)
		}
	}
}

func TestRuleOK(t *testing.T) {
	k := key("eth0", 1, EtherTypeIPv4)
	if !ruleOK(ruleExprs(k, Rx), k, Rx) {
		t.Error("a rule is not OK for its own key")
	}
	if ruleOK(ruleExprs(k, Tx), k, Rx) {
		t.Error("a tx rule is OK as an rx rule")
	}
	if ruleOK(ruleExprs(key("eth0", 2, EtherTypeIPv4), Rx), k, Rx) {
		t.Error("another MAC's rule is OK")
	}
}
