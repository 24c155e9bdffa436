package l2count

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
)

// Counts reads the packets and last-packet times of every key the last
// Sync installed, in one dump of the "seen" set and no writes. A key with
// no packet yet either way is absent, and so is everything when the table
// was flushed behind uplinkd's back (the next Sync restores it, and the
// counts start again from zero).
func (c *Counter) Counts() (map[Key]Counts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, errClosed
	}
	out := map[Key]Counts{}
	if len(c.ids) == 0 {
		return out, nil
	}
	now := c.now()
	els, err := c.conn.GetSetElements(seenSet())
	if err != nil && c.tableGone() {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading set %s %s: %w", TableName, setName, err)
	}
	for _, e := range els {
		if len(e.Key) != 4 || e.Counter == nil {
			continue
		}
		kd, ok := c.ids[binary.BigEndian.Uint32(e.Key)]
		if !ok {
			continue // a neighbour no longer counted, until its element expires
		}
		timeout := e.Timeout
		if timeout == 0 {
			timeout = lastMemory
		}
		last := now.Add(e.Expires - timeout)
		cs := out[kd.k]
		if kd.d == Tx {
			cs.Tx, cs.LastTx = e.Counter.Packets, last
		} else {
			cs.Rx, cs.LastRx = e.Counter.Packets, last
		}
		out[kd.k] = cs
	}
	return out, nil
}

// tableGone tells a dump that failed because uplinkd's table is gone from
// any other failure. (The library folds the errno of set dumps into text;
// the table lookup keeps it.)
func (c *Counter) tableGone() bool {
	_, err := c.conn.ListTableOfFamily(TableName, nftables.TableFamilyNetdev)
	return errors.Is(err, os.ErrNotExist)
}
