package l2counttest

import (
	"encoding/binary"
	"fmt"
	"net"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TCX is what tcx holds on one interface, read as a test reads it.
type TCX struct {
	// Programs are the names of the attached programs per direction
	// ("rx", "tx"), in their order; IDs their kernel ids in the same
	// order (the same ids after a restart: nothing was re-attached).
	Programs map[string][]string
	IDs      map[string][]uint32
	// Counted are the MACs uplinkd's map counts on this interface, as
	// "mac ethertype", each once, sorted.
	Counted []string
}

// TCXState reads the tcx state of the interface with index. do runs its
// function inside the interface's namespace (nstest's Host.Do): tcx names
// interfaces by index, in the caller's namespace. Opening a program by id
// needs CAP_SYS_ADMIN, as privileged tests have.
func TCXState(do func(func() error) error, index int) (TCX, error) {
	st := TCX{Programs: map[string][]string{}, IDs: map[string][]uint32{}}
	counted := map[string]bool{}
	err := do(func() error {
		for _, dir := range []struct {
			name string
			at   ebpf.AttachType
		}{{"rx", ebpf.AttachTCXIngress}, {"tx", ebpf.AttachTCXEgress}} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: dir.at})
			if err != nil {
				return err
			}
			for _, ap := range r.Programs {
				p, err := ebpf.NewProgramFromID(ap.ID)
				if err != nil {
					return err
				}
				info, err := p.Info()
				p.Close()
				if err != nil {
					return err
				}
				st.Programs[dir.name] = append(st.Programs[dir.name], info.Name)
				st.IDs[dir.name] = append(st.IDs[dir.name], uint32(ap.ID))
				if info.Name == "uplinkd_rx" || info.Name == "uplinkd_tx" {
					ids, _ := info.MapIDs()
					if err := readCounted(ids, index, counted); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	for k := range counted {
		st.Counted = append(st.Counted, k)
	}
	sort.Strings(st.Counted)
	return st, err
}

// readCounted adds the keys of uplinkd's map on interface index (see
// l2count's bpfKey: ifindex, MAC, ethertype, direction).
func readCounted(ids []ebpf.MapID, index int, into map[string]bool) error {
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return err
		}
		var k [16]byte
		var v [][16]byte // per CPU
		it := m.Iterate()
		for it.Next(&k, &v) {
			if int(binary.NativeEndian.Uint32(k[0:4])) == index {
				into[fmt.Sprintf("%s %04x", net.HardwareAddr(k[4:10]), binary.BigEndian.Uint16(k[10:12]))] = true
			}
		}
		err = it.Err()
		m.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
