package l2count

import (
	"fmt"
	"sort"
	"strings"
)

// Chain is one of the table's base chains: the ingress (Rx) or egress (Tx)
// hook of one interface.
type Chain struct {
	Iface string
	Dir   Dir
}

// Name is the chain's name in the table: "rx_eth0", "tx_eth0".
func (c Chain) Name() string { return c.Dir.String() + "_" + c.Iface }

func parseChainName(name string) (Chain, bool) {
	for _, d := range []Dir{Rx, Tx} {
		if iface, ok := strings.CutPrefix(name, d.String()+"_"); ok && iface != "" {
			return Chain{Iface: iface, Dir: d}, true
		}
	}
	return Chain{}, false
}

// Rule is one counting rule found in the table.
type Rule struct {
	Chain  Chain
	Key    Key
	Handle uint64
	OK     bool // exactly the rule uplinkd would write for Key
}

// Have is what Read found of uplinkd's table in the kernel.
type Have struct {
	Table bool
	// Broken says the table exists but its "last" set is missing or not
	// of our making: the table is rebuilt (in the same transaction).
	Broken bool
	Chains map[Chain]bool // chain -> hooked exactly as uplinkd hooks it
	Rules  []Rule
}

// OpKind is what one operation does.
type OpKind uint8

const (
	AddTable OpKind = iota
	DelTable
	AddSet
	AddChain
	DelChain
	AddRule
	DelRule
)

var opNames = [...]string{"add table", "delete table", "add set", "add chain", "delete chain", "add rule", "delete rule"}

// Op is one write to the kernel.
type Op struct {
	Kind   OpKind
	Chain  Chain  // chains and rules
	Key    Key    // AddRule
	Handle uint64 // DelRule
}

func (o Op) String() string {
	s := opNames[o.Kind]
	switch o.Kind {
	case AddChain, DelChain:
		s += " " + o.Chain.Name()
	case AddRule:
		s += fmt.Sprintf(" %s %s", o.Chain.Name(), o.Key)
	case DelRule:
		s += fmt.Sprintf(" %s handle %d", o.Chain.Name(), o.Handle)
	}
	return s
}

// Plan returns the writes that turn have into want, in the order one
// nftables transaction applies them: additions before deletions, and a
// chain that is not ours in shape deleted just before it is re-created.
// want with no keys means no table at all. Adopting a table that already
// matches want plans nothing.
func Plan(want []Key, have Have) ([]Op, error) {
	want = append([]Key(nil), want...)
	sortKeys(want)
	ids := map[uint32]string{}
	for _, k := range want {
		for _, d := range []Dir{Rx, Tx} {
			id := k.id(d)
			if prev, dup := ids[id]; dup && prev != d.String()+" "+k.String() {
				return nil, fmt.Errorf("planning counters: %s %s and %s share an element id", d, k, prev)
			}
			ids[id] = d.String() + " " + k.String()
		}
	}
	if len(want) == 0 {
		if have.Table {
			return []Op{{Kind: DelTable}}, nil
		}
		return nil, nil
	}
	var ops []Op
	if have.Broken {
		ops = append(ops, Op{Kind: DelTable})
		have = Have{}
	}
	if !have.Table {
		ops = append(ops, Op{Kind: AddTable}, Op{Kind: AddSet})
	}
	wantChains := map[Chain]bool{}
	var chains []Chain
	for _, k := range want {
		for _, d := range []Dir{Rx, Tx} {
			c := Chain{Iface: k.Iface, Dir: d}
			if !wantChains[c] {
				wantChains[c] = true
				chains = append(chains, c)
			}
		}
	}
	rebuilt := map[Chain]bool{}
	for _, c := range chains {
		ok, exists := have.Chains[c]
		if exists && !ok {
			ops = append(ops, Op{Kind: DelChain, Chain: c})
			rebuilt[c] = true
		}
		if !exists || !ok {
			ops = append(ops, Op{Kind: AddChain, Chain: c})
		}
	}
	type ruleID struct {
		c Chain
		k Key
	}
	wantKey := map[Key]bool{}
	for _, k := range want {
		wantKey[k] = true
	}
	kept := map[ruleID]bool{}
	keepHandle := map[uint64]bool{}
	for _, r := range have.Rules {
		id := ruleID{r.Chain, r.Key}
		if r.OK && wantKey[r.Key] && r.Key.Iface == r.Chain.Iface && !rebuilt[r.Chain] && wantChains[r.Chain] && !kept[id] {
			kept[id] = true
			keepHandle[r.Handle] = true
		}
	}
	for _, k := range want {
		for _, d := range []Dir{Rx, Tx} {
			c := Chain{Iface: k.Iface, Dir: d}
			if !kept[ruleID{c, k}] {
				ops = append(ops, Op{Kind: AddRule, Chain: c, Key: k})
			}
		}
	}
	for _, r := range have.Rules {
		if !keepHandle[r.Handle] && wantChains[r.Chain] && !rebuilt[r.Chain] {
			ops = append(ops, Op{Kind: DelRule, Chain: r.Chain, Handle: r.Handle})
		}
	}
	var stale []Chain
	for c := range have.Chains {
		if !wantChains[c] {
			stale = append(stale, c)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return stale[i].Name() < stale[j].Name() })
	for _, c := range stale {
		ops = append(ops, Op{Kind: DelChain, Chain: c})
	}
	return ops, nil
}
