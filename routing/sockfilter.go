package routing

import (
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// A classic BPF socket filter on the route notification socket drops, in
// the kernel, the notifications a reconciler cannot care about, before they
// are queued: a BGP daemon converging a full table sends a million of them,
// and each one that reaches uplinkd costs a read and a parse, and fills the
// socket until it overflows (ENOBUFS, then a re-read). Dropped by the
// filter, they cost nothing and never count against the receive buffer.
//
// The filter is coarse and errs on keeping: it keeps every route of the
// reconciler's protocol and every route whose (family, prefix length,
// table) is that of a wanted key; the watcher's RouteFilter then decides
// exactly. A BGP table churns on prefixes of other tables or lengths than
// uplinkd's defaults and announces, so nearly all of it stays in the
// kernel.

// Offsets in a route notification: struct nlmsghdr (16 bytes), then struct
// rtmsg (family, dst_len, src_len, tos, table, protocol, scope, type,
// flags u32), then attributes.
const (
	offFamily   = unix.NLMSG_HDRLEN + 0
	offDstLen   = unix.NLMSG_HDRLEN + 1
	offProtocol = unix.NLMSG_HDRLEN + 5
	offFlags    = unix.NLMSG_HDRLEN + 8
	offAttrs    = unix.NLMSG_HDRLEN + unix.SizeofRtMsg
)

// maxFilterTuples bounds the program well inside BPF_MAXINSNS (4096): 7
// instructions per tuple. A policy with more distinct (family, length,
// table) tuples (a thousand per-gateway tables) gets no kernel filter and
// relies on the RouteFilter alone.
const maxFilterTuples = 500

// be32 is v as a classic BPF word load sees it: BPF loads are big-endian,
// netlink fields are host-endian.
func be32(v uint32) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return binary.BigEndian.Uint32(b[:])
}

type filterTuple struct {
	family uint8
	dstLen uint8
	table  uint32
}

// routeSocketFilter compiles in into a socket filter, or returns nil when
// in has too many tuples for one.
func routeSocketFilter(in *interest) ([]bpf.RawInstruction, error) {
	var tuples []filterTuple
	for k := range in.keys {
		af := uint8(unix.AF_INET)
		if k.Family == 6 {
			af = unix.AF_INET6
		}
		tuples = append(tuples, filterTuple{af, uint8(k.Dst.Bits()), k.Table})
	}
	slices.SortFunc(tuples, func(a, b filterTuple) int {
		if c := int(a.family) - int(b.family); c != 0 {
			return c
		}
		if c := int(a.dstLen) - int(b.dstLen); c != 0 {
			return c
		}
		return int(a.table) - int(b.table)
	})
	tuples = slices.Compact(tuples)
	if len(tuples) > maxFilterTuples {
		return nil, nil
	}
	const keep, drop = 0xffffffff, 0
	prog := []bpf.Instruction{
		// The reconciler's own routes, anywhere.
		bpf.LoadAbsolute{Off: offProtocol, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(in.proto), SkipFalse: 1},
		bpf.RetConstant{Val: keep},
		// Cloned (cache) routes are never anyone's.
		bpf.LoadAbsolute{Off: offFlags, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: be32(unix.RTM_F_CLONED), SkipFalse: 1},
		bpf.RetConstant{Val: drop},
		bpf.LoadAbsolute{Off: offFamily, Size: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: 0},
		bpf.LoadAbsolute{Off: offDstLen, Size: 1},
		bpf.StoreScratch{Src: bpf.RegA, N: 1},
		// The table: RTA_TABLE, which the kernel always sends (rtm_table
		// holds only tables below 256). Without it, keep.
		bpf.LoadConstant{Dst: bpf.RegA, Val: offAttrs},
		bpf.LoadConstant{Dst: bpf.RegX, Val: unix.RTA_TABLE},
		bpf.LoadExtension{Num: bpf.ExtNetlinkAttr},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 1},
		bpf.RetConstant{Val: keep},
		bpf.TAX{},
		bpf.LoadIndirect{Off: 4, Size: 4},
		bpf.StoreScratch{Src: bpf.RegA, N: 2},
	}
	for _, t := range tuples {
		prog = append(prog,
			bpf.LoadScratch{Dst: bpf.RegA, N: 0},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(t.family), SkipFalse: 5},
			bpf.LoadScratch{Dst: bpf.RegA, N: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(t.dstLen), SkipFalse: 3},
			bpf.LoadScratch{Dst: bpf.RegA, N: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: be32(t.table), SkipFalse: 1},
			bpf.RetConstant{Val: keep},
		)
	}
	prog = append(prog, bpf.RetConstant{Val: drop})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assembling route socket filter: %w", err)
	}
	return raw, nil
}

// attachFilter sets prog as the socket filter of rc's socket, replacing
// any; a nil prog removes it (everything is kept).
func attachFilter(rc syscall.RawConn, prog []bpf.RawInstruction) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if prog == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			if serr == unix.ENOENT { // none attached
				serr = nil
			}
			return
		}
		f := make([]unix.SockFilter, len(prog))
		for i, ins := range prog {
			f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]})
	})
	if err != nil {
		return err
	}
	return serr
}
