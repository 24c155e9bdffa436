package l2count

import (
	"fmt"
	"sort"
)

// Hook is one tcx attach point: an interface (by index, in the counter's
// namespace) and a direction.
type Hook struct {
	Index int
	Dir   Dir
}

// BPFHave is what the kernel holds of uplinkd's eBPF counting: where its
// programs are attached and which keys its map counts.
type BPFHave struct {
	// Ours are the hooks where uplinkd's program of that direction is
	// attached.
	Ours map[Hook]bool
	// Stale are hooks holding an older uplinkd program (another
	// generation, or one whose map is not ours): detached.
	Stale map[Hook]bool
	// Keys are the map's keys, by interface index.
	Keys map[BPFKey]bool
}

// BPFKey is a map key: a counted neighbour in one direction on one
// interface index.
type BPFKey struct {
	Index int
	Key   Key
	Dir   Dir
}

// BPFOpKind is what one eBPF operation does.
type BPFOpKind uint8

const (
	PutKey      BPFOpKind = iota // insert a zeroed counter for a key
	Attach                       // attach uplinkd's program to a hook
	DelKey                       // delete a key no longer counted
	Detach                       // detach uplinkd's program from a hook
	DetachStale                  // detach an older uplinkd program
)

var bpfOpNames = [...]string{"put key", "attach", "delete key", "detach", "detach stale"}

// BPFOp is one write of the eBPF apply.
type BPFOp struct {
	Kind BPFOpKind
	Hook Hook   // Attach, Detach, DetachStale
	Key  BPFKey // PutKey, DelKey
}

func (o BPFOp) String() string {
	switch o.Kind {
	case PutKey, DelKey:
		return fmt.Sprintf("%s %d %s %s", bpfOpNames[o.Kind], o.Key.Index, o.Key.Key, o.Key.Dir)
	default:
		return fmt.Sprintf("%s %d %s", bpfOpNames[o.Kind], o.Hook.Index, o.Hook.Dir)
	}
}

// PlanBPF returns the writes that make the kernel count exactly want,
// adopting
// what is there: keys first (a program attached counts from its first
// frame), then attaches, then deletes and detaches. Keys keep their
// counts; the programs are never replaced while they are ours.
func PlanBPF(want []BPFKey, have BPFHave) []BPFOp {
	var ops []BPFOp
	wantKeys := map[BPFKey]bool{}
	wantHooks := map[Hook]bool{}
	for _, k := range want {
		wantKeys[k] = true
		wantHooks[Hook{k.Index, k.Dir}] = true
	}
	for _, k := range sortedBPFKeys(wantKeys) {
		if !have.Keys[k] {
			ops = append(ops, BPFOp{Kind: PutKey, Key: k})
		}
	}
	for _, h := range sortedHooks(wantHooks) {
		if !have.Ours[h] {
			ops = append(ops, BPFOp{Kind: Attach, Hook: h})
		}
	}
	for _, k := range sortedBPFKeys(have.Keys) {
		if !wantKeys[k] {
			ops = append(ops, BPFOp{Kind: DelKey, Key: k})
		}
	}
	for _, h := range sortedHooks(have.Ours) {
		if !wantHooks[h] {
			ops = append(ops, BPFOp{Kind: Detach, Hook: h})
		}
	}
	for _, h := range sortedHooks(have.Stale) {
		ops = append(ops, BPFOp{Kind: DetachStale, Hook: h})
	}
	return ops
}

func sortedHooks(m map[Hook]bool) []Hook {
	return sortedSet(m, func(a, b Hook) bool {
		if a.Index != b.Index {
			return a.Index < b.Index
		}
		return a.Dir < b.Dir
	})
}

func sortedBPFKeys(m map[BPFKey]bool) []BPFKey {
	return sortedSet(m, func(a, b BPFKey) bool {
		if a.Index != b.Index {
			return a.Index < b.Index
		}
		if a.Key != b.Key {
			return a.Key.less(b.Key)
		}
		return a.Dir < b.Dir
	})
}

// sortedSet returns the members of a set (the keys mapped to true) in
// less's order: plans are written in a fixed order, so they can be
// compared in tests and read in logs.
func sortedSet[T comparable](m map[T]bool, less func(a, b T) bool) []T {
	var out []T
	for k, ok := range m {
		if ok {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}
