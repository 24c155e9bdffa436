package policy

import (
	"net/netip"
	"strconv"
)

// FamilyOf is an address's family as the policy and routing count it: 4
// or 6. It lives here, the lowest layer, so that one function decides it
// for the whole tree.
func FamilyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// TableName renders a routing table id as ip does: the builtin names
// (main, default, local, unspec) or the number. Policy errors and
// routing's ip-style dumps both use it.
func TableName(id uint32) string {
	for n, t := range builtinTables {
		if t == id {
			return n
		}
	}
	return strconv.FormatUint(uint64(id), 10)
}
