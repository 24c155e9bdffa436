package l2counttest

import (
	"net"
	"net/netip"
	"sync"

	"github.com/uplinkd/uplinkd/detector/l2count"
)

// Table models uplinkd's table: counts live per key, only installed keys
// count (Send), a key removed and installed again starts from zero, and
// Flush loses everything as `nft flush ruleset` does.
type Table struct {
	mu        sync.Mutex
	installed map[l2count.Key]bool
	counts    map[l2count.Key]l2count.Counts
	// SyncErr, when set, is returned by Sync, which then changes nothing.
	SyncErr   error
	Syncs     int // calls that changed something
	Withdrawn bool
}

// NewTable returns an empty Table.
func NewTable() *Table {
	return &Table{installed: map[l2count.Key]bool{}, counts: map[l2count.Key]l2count.Counts{}}
}

func (t *Table) Sync(want []l2count.Key) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.SyncErr != nil {
		return 0, t.SyncErr
	}
	w := map[l2count.Key]bool{}
	writes := 0
	for _, k := range want {
		w[k] = true
		if !t.installed[k] {
			writes += 2
		}
	}
	for k := range t.installed {
		if !w[k] {
			writes += 2
			delete(t.counts, k)
		}
	}
	t.installed = w
	if writes > 0 {
		t.Syncs++
	}
	return writes, nil
}

func (t *Table) Counts() (map[l2count.Key]l2count.Counts, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[l2count.Key]l2count.Counts{}
	for k, c := range t.counts {
		if t.installed[k] {
			out[k] = c
		}
	}
	return out, nil
}

func (t *Table) Withdraw() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.installed, t.counts, t.Withdrawn = map[l2count.Key]bool{}, map[l2count.Key]l2count.Counts{}, true
	return nil
}

// Send counts tx packets to and rx packets from k, if k is installed.
func (t *Table) Send(k l2count.Key, tx, rx uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.installed[k] {
		return
	}
	c := t.counts[k]
	c.Tx += tx
	c.Rx += rx
	t.counts[k] = c
}

// Installed reports whether k is counted.
func (t *Table) Installed(k l2count.Key) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.installed[k]
}

// Flush drops the whole table behind the Source's back.
func (t *Table) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.installed, t.counts = map[l2count.Key]bool{}, map[l2count.Key]l2count.Counts{}
}

// Neighbours is an in-memory neighbour cache: names by index, and the
// usable MAC of each neighbour.
type Neighbours struct {
	mu    sync.Mutex
	Names map[int]string
	macs  map[int]map[netip.Addr]net.HardwareAddr
}

// NewNeighbours returns a cache with the given interface names.
func NewNeighbours(names map[int]string) *Neighbours {
	return &Neighbours{Names: names, macs: map[int]map[netip.Addr]net.HardwareAddr{}}
}

// Set makes addr resolve to mac on the interface (nil: unresolved).
func (n *Neighbours) Set(index int, addr netip.Addr, mac net.HardwareAddr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.macs[index] == nil {
		n.macs[index] = map[netip.Addr]net.HardwareAddr{}
	}
	if mac == nil {
		delete(n.macs[index], addr)
		return
	}
	n.macs[index][addr] = mac
}

func (n *Neighbours) LinkName(index int) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.Names[index]; ok {
		return name, nil
	}
	return "", net.UnknownNetworkError("no such interface")
}

func (n *Neighbours) MACs(index int) (map[netip.Addr]net.HardwareAddr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[netip.Addr]net.HardwareAddr{}
	for a, m := range n.macs[index] {
		out[a] = m
	}
	return out, nil
}
