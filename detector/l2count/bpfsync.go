package l2count

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

var errBPFClosed = errors.New("eBPF counter closed")

// read returns what the kernel holds of uplinkd's eBPF counting in the
// namespace. It writes nothing.
func (c *BPFCounter) read() (BPFHave, error) {
	if c.closed {
		return BPFHave{}, errBPFClosed
	}
	have := BPFHave{Ours: map[Hook]bool{}, Stale: map[Hook]bool{}, Keys: map[BPFKey]bool{}}
	found, err := c.attached()
	if err != nil {
		return BPFHave{}, err
	}
	for id, hooks := range found {
		for _, h := range hooks {
			switch {
			case id == c.ids[h.Dir]:
				have.Ours[h] = true
			case c.stale[id] != nil:
				have.Stale[h] = true
			}
		}
	}
	entries, err := c.walk()
	if err != nil {
		return BPFHave{}, err
	}
	for _, e := range entries {
		k := e.key
		if bk, ok := c.keys[k]; ok {
			have.Keys[bk.bpf] = true
		} else {
			// A key no longer wanted (a previous run's): decoded,
			// with no interface name, so that the plan deletes it.
			have.Keys[decodeBPFKey(k)] = true
		}
	}
	return have, nil
}

// Sync makes the programs count exactly want (every key both ways),
// adopting what is there: an unchanged state costs reads only. It
// returns the writes it made. A key whose interface does not exist (yet)
// is not counted.
func (c *BPFCounter) Sync(want []Key) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var bks []BPFKey
	keys := map[[bpfKeySize]byte]keyDir{}
	for _, k := range want {
		l, err := c.h.LinkByName(k.Iface)
		if err != nil {
			continue
		}
		for _, d := range []Dir{Rx, Tx} {
			bk := BPFKey{Index: l.Attrs().Index, Key: k, Dir: d}
			bks = append(bks, bk)
			keys[bpfKey(bk.Index, k, d)] = keyDir{k: k, d: d, bpf: bk}
		}
	}
	c.keys = keys // read() names the keys it finds by these
	have, err := c.read()
	if err != nil {
		return 0, err
	}
	ops := PlanBPF(bks, have)
	n, err := c.apply(ops)
	if err != nil {
		return n, fmt.Errorf("installing eBPF counting: %w", err)
	}
	return n, nil
}

func (c *BPFCounter) apply(ops []BPFOp) (int, error) {
	n := 0
	err := c.inNS(func() error {
		for _, o := range ops {
			if err := c.applyOne(o); err != nil {
				return fmt.Errorf("%s: %w", o, err)
			}
			n++
		}
		return nil
	})
	if err == nil {
		for id, p := range c.stale { // every stale hook was detached
			p.Close()
			delete(c.stale, id)
		}
	}
	return n, err
}

func (c *BPFCounter) applyOne(o BPFOp) error {
	switch o.Kind {
	case PutKey:
		k := bpfKey(o.Key.Index, o.Key.Key, o.Key.Dir)
		zero := make([][bpfValueSize]byte, c.cpus)
		if err := c.seen.Update(k, zero, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return err
		}
	case DelKey:
		k := bpfKey(o.Key.Index, o.Key.Key, o.Key.Dir)
		if err := c.seen.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	case Attach:
		anchor := link.Head() // ingress: count before anyone can drop
		if o.Hook.Dir == Tx {
			anchor = link.Tail() // egress: what really leaves
		}
		err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: o.Hook.Index,
			Program: c.progs[o.Hook.Dir], Attach: attachType(o.Hook.Dir), Anchor: anchor})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	case Detach:
		return detach(o.Hook, c.progs[o.Hook.Dir])
	case DetachStale:
		for _, p := range c.stale {
			if err := detach(o.Hook, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// detach removes p from h; not attached there, or the interface gone, is
// success.
func detach(h Hook, p *ebpf.Program) error {
	err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: h.Index, Program: p, Attach: attachType(h.Dir)})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// Counts reads the packets and last-packet times of every key the last
// Sync installed: one walk of the map, no writes. A key with no packet
// yet either way is absent.
func (c *BPFCounter) Counts() (map[Key]Counts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errBPFClosed
	}
	out := map[Key]Counts{}
	now, mono := c.now(), c.mono()
	entries, err := c.walk()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		kd, ok := c.keys[e.key]
		val := e.val
		if !ok || val.Packets == 0 {
			continue
		}
		last := now.Add(time.Duration(val.LastNS) - mono)
		cs := out[kd.k]
		if kd.d == Tx {
			cs.Tx, cs.LastTx = val.Packets, last
		} else {
			cs.Rx, cs.LastRx = val.Packets, last
		}
		out[kd.k] = cs
	}
	return out, nil
}

// Withdraw detaches uplinkd's programs from every interface of the
// namespace, and nothing else. The map goes with the last descriptor.
func (c *BPFCounter) Withdraw() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys = nil
	have, err := c.read()
	if err != nil {
		return err
	}
	var ops []BPFOp
	for _, h := range sortedHooks(have.Ours) {
		ops = append(ops, BPFOp{Kind: Detach, Hook: h})
	}
	for _, h := range sortedHooks(have.Stale) {
		ops = append(ops, BPFOp{Kind: DetachStale, Hook: h})
	}
	if _, err := c.apply(ops); err != nil {
		return fmt.Errorf("withdrawing eBPF counting: %w", err)
	}
	return nil
}

type bpfEntry struct {
	key [bpfKeySize]byte
	val bpfValue
}

// walk reads the whole map in batches (BPF_MAP_LOOKUP_BATCH, one syscall
// for a few keys, where iterating costs two per key). A hash bucket
// larger than the batch makes the kernel refuse it (ENOSPC): the walk
// starts again with a batch twice the size.
func (c *BPFCounter) walk() ([]bpfEntry, error) {
	n := max(2*len(c.keys), 16)
	for {
		out, err := c.walkBatch(n)
		if errors.Is(err, unix.ENOSPC) && n < setSize {
			n *= 2
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading map %s: %w", mapName, err)
		}
		return out, nil
	}
}

func (c *BPFCounter) walkBatch(n int) ([]bpfEntry, error) {
	keys := make([][bpfKeySize]byte, n)
	vals := make([][bpfValueSize]byte, n*c.cpus)
	var out []bpfEntry
	var cur ebpf.MapBatchCursor
	for {
		got, err := c.seen.BatchLookup(&cur, keys, vals, nil)
		for i := range got {
			out = append(out, bpfEntry{keys[i], sumBPFValues(vals[i*c.cpus : (i+1)*c.cpus])})
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
