package main

import (
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

func TestUplink1Outage(t *testing.T) {
	ms := time.Millisecond
	up1, up2 := netlab.NATServerIf(1), netlab.NATServerIf(2)
	// flow sends every 100 ms from 1.5 s to 5 s; recv gives each packet's
	// reply time, or -1 from lostFrom to backAt.
	flow := func(lostFrom, backAt time.Duration) *netlab.Flow {
		f := &netlab.Flow{}
		for s := 1500 * ms; s < 5*time.Second; s += 100 * ms {
			f.Sent = append(f.Sent, s)
			r := s + ms
			if s >= lostFrom && s < backAt {
				r = -1
			}
			f.Recv = append(f.Recv, r)
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		before []string
		flows  []*netlab.Flow
		want   time.Duration
		lost   time.Duration
	}{
		{"slowest of g1's flows counts", []string{up1, up1, up2},
			[]*netlab.Flow{flow(2*time.Second, 2100*ms), flow(2*time.Second, 2300*ms), flow(0, 0)}, 400 * ms, 2 * time.Second},
		{"a healthy flow's gap is not g1's", []string{up1, up2},
			[]*netlab.Flow{flow(2*time.Second, 2100*ms), flow(1*time.Second, 3500*ms)}, 200 * ms, 2 * time.Second},
		// The kernel alone: answered only once g1 is back (4 s).
		{"not while dead", []string{up1},
			[]*netlab.Flow{flow(2*time.Second, natReturnAt)}, -1, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &netlab.FailoverResult{Before: tc.before, Traffic: &netlab.Traffic{Flows: tc.flows}}
			if got, lost := uplink1Outage(fr); got != tc.want || lost != tc.lost {
				t.Errorf("uplink1Outage = %v, first lost %v; want %v, %v", got, lost, tc.want, tc.lost)
			}
		})
	}
}
