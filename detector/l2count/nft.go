package l2count

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is uplinkd's nftables table (family netdev). Nothing else is
// ever read or written.
const TableName = "uplinkd"

const (
	setName = "seen"
	// lastMemory is how long the "seen" set remembers a neighbour: the
	// timeout every counted packet refreshes. A neighbour silent for
	// longer loses its element, so its counts start again from zero.
	lastMemory = 24 * time.Hour
	// setSize bounds the set: two elements per counted neighbour.
	setSize = 4096
	// Ingress counts first, before any operator's filter can drop what
	// arrived; egress counts last, what really leaves.
	prioRx = -10000
	prioTx = 10000
	// ruleTag starts every rule's comment, naming the owner in `nft list`.
	ruleTag = "uplinkd "
)

// ErrUnsupported says the kernel lacks what per-neighbour counting needs
// (nf_tables, the netdev egress hook, dynamic sets with timeouts).
var ErrUnsupported = errors.New("per-neighbour counting not supported by the kernel")

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyNetdev}

// seenSet holds one element per counted neighbour and direction (keyed
// by a 32-bit id, typed "mark" only so that nft can print it), created
// and refreshed by the rules' dynset update: its counter is the packets,
// its remaining timeout when the last one passed. One dump of it is the
// whole read.
func seenSet() *nftables.Set {
	return &nftables.Set{Table: table, Name: setName, KeyType: nftables.TypeMark,
		HasTimeout: true, Dynamic: true, Counter: true, Size: setSize}
}

func nftChain(c Chain) *nftables.Chain {
	hook, prio := nftables.ChainHookIngress, nftables.ChainPriorityRef(prioRx)
	if c.Dir == Tx {
		hook, prio = nftables.ChainHookEgress, nftables.ChainPriorityRef(prioTx)
	}
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: c.Name(), Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: prio, Device: c.Iface, Policy: &accept}
}

// chainOK says whether a chain found in the table is hooked as uplinkd
// hooks it. (The library does not read a chain's device back; the name
// carries it.)
func chainOK(got *nftables.Chain, c Chain) bool {
	want := nftChain(c)
	return got.Type == want.Type && got.Hooknum != nil && *got.Hooknum == *want.Hooknum &&
		got.Priority != nil && *got.Priority == *want.Priority &&
		(got.Policy == nil || *got.Policy == nftables.ChainPolicyAccept)
}

// ruleExprs is the rule counting k in direction d: match the neighbour's
// MAC (source on ingress, destination on egress) and the family, then
// update the neighbour's element of the "seen" set, which counts the
// packet and refreshes the element's timeout.
func ruleExprs(k Key, d Dir) []expr.Any {
	proto := make([]byte, 2)
	binary.BigEndian.PutUint16(proto, k.EtherType)
	count := []expr.Any{
		&expr.Immediate{Register: 1, Data: idBytes(k.id(d))},
		&expr.Dynset{SrcRegKey: 1, SetName: setName, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: lastMemory},
	}
	if d == Tx {
		// The destination MAC first: it rejects every other
		// neighbour's packets at the cost of one load and one compare.
		return append([]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte(nil), k.MAC[:]...)},
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: proto},
		}, count...)
	}
	// The source MAC and the ethertype are adjacent in the frame: one
	// load and one compare match both.
	return append([]expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 8},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append(append([]byte(nil), k.MAC[:]...), proto...)},
		// Only frames addressed to this host: a gateway's multicast
		// (router advertisements, neighbour solicitations, MLD) says
		// nothing about whether it forwards our traffic.
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_HOST}},
	}, count...)
}

// ruleUserData is the rule's comment, in the TLV that nft reads
// (NFTNL_UDATA_RULE_COMMENT, NUL-terminated), so that `nft list` shows
// whose rule it is and what it counts.
func ruleUserData(k Key) []byte {
	c := ruleTag + k.String() + "\x00"
	return append([]byte{0, byte(len(c))}, c...)
}

// parseUserData reads the key back from a rule's comment.
func parseUserData(b []byte) (Key, bool) {
	if len(b) < 2 || b[0] != 0 || int(b[1]) != len(b)-2 || b[len(b)-1] != 0 {
		return Key{}, false
	}
	c := string(b[2 : len(b)-1])
	if !strings.HasPrefix(c, ruleTag) {
		return Key{}, false
	}
	f := strings.Fields(strings.TrimPrefix(c, ruleTag))
	if len(f) != 3 {
		return Key{}, false
	}
	mac, err := net.ParseMAC(f[1])
	if err != nil {
		return Key{}, false
	}
	var et uint16
	switch f[2] {
	case "ip":
		et = EtherTypeIPv4
	case "ip6":
		et = EtherTypeIPv6
	default:
		return Key{}, false
	}
	k, err := NewKey(f[0], mac, et)
	return k, err == nil
}

// ruleOK says whether got is exactly the rule uplinkd writes for k: same
// expressions, byte for byte once encoded.
func ruleOK(got []expr.Any, k Key, d Dir) bool {
	want := ruleExprs(k, d)
	if len(got) != len(want) {
		return false
	}
	fam := byte(nftables.TableFamilyNetdev)
	for i := range want {
		wb, werr := expr.Marshal(fam, want[i])
		gb, gerr := expr.Marshal(fam, got[i])
		if werr != nil || gerr != nil || !bytes.Equal(wb, gb) {
			return false
		}
	}
	return true
}

// unsupported classifies the kernel's refusals that mean "this kernel
// cannot", as opposed to a transient failure.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EAFNOSUPPORT) ||
		errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, os.ErrNotExist)
}
