package l2count

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The eBPF counter: one hash map and two tc programs of uplinkd's own,
// attached with tcx (kernel 6.6) to the managed interfaces. Why eBPF and
// nftables both: see docs/design.md ("Choice"): the program is JITed and
// does one hash lookup per frame, where the nftables rules are
// interpreted one by one; nftables stays as the fallback where eBPF
// cannot be loaded.

const (
	// Object names (at most 15 bytes), how `bpftool prog` shows them and
	// how a restarted daemon recognises its own.
	progNameRx = "uplinkd_rx"
	progNameTx = "uplinkd_tx"
	mapName    = "uplinkd_seen"

	// bpfKeySize is the map key: ifindex (u32, host order), the
	// neighbour's MAC (6 bytes), the ethertype (2 bytes, network order,
	// as in the frame) and the direction (u32, host order).
	bpfKeySize = 16
	// bpfValueSize is the map value, one per CPU: packets (u64) and the
	// CLOCK_MONOTONIC_COARSE time of the last one in ns (u64). Per CPU,
	// so that two CPUs counting one gateway never share a cache line or
	// need an atomic add; the coarse clock (a tick, 4 ms at HZ=250, as
	// the nftables timeouts) is a load where the precise one reads the
	// clock source.
	bpfValueSize = 16

	dirRx = 1
	dirTx = 2

	// tcxNext hands the frame to the next program, or to the legacy tc
	// filters: counting never decides a frame's fate, and never hides
	// it from an operator's program attached after ours.
	tcxNext = -1

	// Offsets in struct __sk_buff (include/uapi/linux/bpf.h).
	skbPktType = 4
	skbIfindex = 40
	skbData    = 76
	skbDataEnd = 80
)

func seenMapSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: mapName, Type: ebpf.PerCPUHash, KeySize: bpfKeySize,
		ValueSize: bpfValueSize, MaxEntries: setSize}
}

// progInsns is the program of one direction. The map's file descriptor is
// an immediate; the kernel leaves it out of the program's tag, so the
// tag of progInsns(d, anything) identifies uplinkd's program of d.
func progInsns(d Dir, mapFD int) asm.Instructions {
	macOff, dir := int16(6), int64(dirRx) // ingress: the source MAC
	if d == Tx {
		macOff, dir = 0, dirTx // egress: the destination MAC
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, skbData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, skbDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14), // an Ethernet header
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
	}
	if d == Rx {
		// Only frames addressed to this host: a gateway's multicast
		// (router advertisements, neighbour solicitations) says nothing
		// about whether it forwards our traffic.
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R6, skbPktType, asm.Word),
			asm.JNE.Imm(asm.R5, 0, "out")) // PACKET_HOST
	}
	insns = append(insns,
		// The key, on the stack at fp-16.
		asm.LoadMem(asm.R5, asm.R6, skbIfindex, asm.Word),
		asm.StoreMem(asm.RFP, -16, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R2, macOff, asm.Word),
		asm.StoreMem(asm.RFP, -12, asm.R5, asm.Word),
		asm.LoadMem(asm.R5, asm.R2, macOff+4, asm.Half),
		asm.StoreMem(asm.RFP, -8, asm.R5, asm.Half),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half), // the ethertype
		asm.StoreMem(asm.RFP, -6, asm.R5, asm.Half),
		asm.StoreImm(asm.RFP, -4, dir, asm.Word),
		// Only keys uplinkd put in the map are counted: a lookup, never
		// an insert, so ARP and every other neighbour cost one miss.
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R7, asm.R0), // this CPU's value
		asm.LoadMem(asm.R1, asm.R7, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R7, 0, asm.R1, asm.DWord), // packets
		asm.FnKtimeGetCoarseNs.Call(),
		asm.StoreMem(asm.R7, 8, asm.R0, asm.DWord), // the last packet
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("out"),
		asm.Return(),
	)
	return insns
}

func progSpec(d Dir, mapFD int) *ebpf.ProgramSpec {
	name, at := progNameRx, ebpf.AttachTCXIngress
	if d == Tx {
		name, at = progNameTx, ebpf.AttachTCXEgress
	}
	return &ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, AttachType: at,
		Instructions: progInsns(d, mapFD), License: "Apache-2.0"}
}

// bpfKey is the map key of k in direction d on interface index.
func bpfKey(index int, k Key, d Dir) [bpfKeySize]byte {
	var b [bpfKeySize]byte
	binary.NativeEndian.PutUint32(b[0:4], uint32(index))
	copy(b[4:10], k.MAC[:])
	binary.BigEndian.PutUint16(b[10:12], k.EtherType)
	dir := uint32(dirRx)
	if d == Tx {
		dir = dirTx
	}
	binary.NativeEndian.PutUint32(b[12:16], dir)
	return b
}

// bpfValue is a key's count: the packets on every CPU, and the
// monotonic coarse ns of the last on any.
type bpfValue struct {
	Packets, LastNS uint64
}

func sumBPFValues(perCPU [][bpfValueSize]byte) bpfValue {
	var v bpfValue
	for _, b := range perCPU {
		v.Packets += binary.NativeEndian.Uint64(b[0:8])
		v.LastNS = max(v.LastNS, binary.NativeEndian.Uint64(b[8:16]))
	}
	return v
}

// decodeBPFKey reads a map key back; the interface is known by index only.
func decodeBPFKey(b [bpfKeySize]byte) BPFKey {
	var k Key
	copy(k.MAC[:], b[4:10])
	k.EtherType = binary.BigEndian.Uint16(b[10:12])
	d := Rx
	if binary.NativeEndian.Uint32(b[12:16]) == dirTx {
		d = Tx
	}
	return BPFKey{Index: int(binary.NativeEndian.Uint32(b[0:4])), Key: k, Dir: d}
}
