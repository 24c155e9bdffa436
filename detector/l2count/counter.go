package l2count

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// Counter owns uplinkd's table in one network namespace. Its methods are
// safe for concurrent use; Sync and Withdraw are the only writers.
type Counter struct {
	mu   sync.Mutex
	conn *nftables.Conn
	ids  map[uint32]keyDir // the elements the last Sync counts, by id
	now  func() time.Time
}

// Open returns the Counter of namespace ns (netns.None(): the caller's).
// It writes nothing. The handle ns is not owned.
func Open(ns netns.NsHandle) (*Counter, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if ns.IsOpen() {
		opts = append(opts, nftables.WithNetNSFd(int(ns)))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	return &Counter{conn: conn, now: time.Now}, nil
}

// Close releases the netlink socket. The table stays: it belongs to the
// namespace and is adopted by the next Open (see Withdraw).
func (c *Counter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.CloseLasting()
	c.conn = nil
	return err
}

var errClosed = errors.New("counter closed")

type keyDir struct {
	k   Key
	d   Dir
	bpf BPFKey // the eBPF counter's key
}

// Read returns what the kernel holds of uplinkd's table. It writes nothing.
func (c *Counter) Read() (Have, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read()
}

func (c *Counter) read() (Have, error) {
	if c.conn == nil {
		return Have{}, errClosed
	}
	var have Have
	if _, err := c.conn.ListTableOfFamily(TableName, nftables.TableFamilyNetdev); err != nil {
		if unsupported(err) {
			return Have{}, nil // no table (or no nf_tables at all: Sync says which)
		}
		return Have{}, fmt.Errorf("reading table %s: %w", TableName, err)
	}
	have.Table = true
	s, err := c.conn.GetSetByName(table, setName)
	if err != nil || s.KeyType.Name != nftables.TypeMark.Name || !s.HasTimeout || !s.Dynamic {
		have.Broken = true
		return have, nil
	}
	chains, err := c.conn.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
	if err != nil {
		return Have{}, fmt.Errorf("listing chains of %s: %w", TableName, err)
	}
	have.Chains = map[Chain]bool{}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != TableName {
			continue
		}
		cc, ok := parseChainName(ch.Name)
		if !ok {
			have.Broken = true // a chain we never write: rebuild the table
			continue
		}
		have.Chains[cc] = chainOK(ch, cc)
		rules, err := c.conn.GetRules(table, ch)
		if err != nil {
			return Have{}, fmt.Errorf("listing rules of %s %s: %w", TableName, ch.Name, err)
		}
		for _, r := range rules {
			k, ok := parseUserData(r.UserData)
			have.Rules = append(have.Rules, Rule{Chain: cc, Key: k, Handle: r.Handle,
				OK: ok && k.Iface == cc.Iface && ruleOK(r.Exprs, k, cc.Dir)})
		}
	}
	return have, nil
}

// Sync makes the table count exactly want (every key on both directions),
// adopting what is already there: an unchanged table costs reads only. It
// returns the writes it made. The apply is one transaction. An error
// wrapping ErrUnsupported means the kernel cannot count per neighbour.
func (c *Counter) Sync(want []Key) (writes int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	have, err := c.read()
	if err != nil {
		return 0, err
	}
	ops, err := Plan(want, have)
	if err != nil {
		return 0, err
	}
	if err := c.apply(ops); err != nil {
		if unsupported(err) {
			return 0, fmt.Errorf("installing table %s: %w: %w", TableName, ErrUnsupported, err)
		}
		return 0, fmt.Errorf("installing table %s: %w", TableName, err)
	}
	c.ids = map[uint32]keyDir{}
	for _, k := range want {
		for _, d := range []Dir{Rx, Tx} {
			c.ids[k.id(d)] = keyDir{k: k, d: d}
		}
	}
	return len(ops), nil
}

func (c *Counter) apply(ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	for _, o := range ops {
		switch o.Kind {
		case AddTable:
			c.conn.AddTable(table)
		case DelTable:
			c.conn.DelTable(table)
		case AddSet:
			if err := c.conn.AddSet(seenSet(), nil); err != nil {
				return err
			}
		case AddChain:
			c.conn.AddChain(nftChain(o.Chain))
		case DelChain:
			c.conn.DelChain(&nftables.Chain{Name: o.Chain.Name(), Table: table})
		case AddRule:
			c.conn.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: o.Chain.Name(), Table: table},
				Exprs: ruleExprs(o.Key, o.Chain.Dir), UserData: ruleUserData(o.Key)})
		case DelRule:
			if err := c.conn.DelRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: o.Chain.Name(), Table: table},
				Handle: o.Handle}); err != nil {
				return err
			}
		}
	}
	return c.conn.Flush()
}

// Withdraw deletes uplinkd's table, and so every chain, rule, counter and
// set in it; nothing else. A missing table is success.
func (c *Counter) Withdraw() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	have, err := c.read()
	if err != nil {
		return err
	}
	c.ids = nil
	if !have.Table {
		return nil
	}
	if err := c.apply([]Op{{Kind: DelTable}}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("withdrawing table %s: %w", TableName, err)
	}
	return nil
}
