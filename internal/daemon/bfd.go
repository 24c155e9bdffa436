package daemon

import (
	"fmt"
	"time"

	"github.com/uplinkd/uplinkd/bfd"
	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
)

// BFDSessions is what the core needs of the BFD server: new sessions on
// reload, and their status. *bfd.Server implements it.
type BFDSessions interface {
	Set(peers []bfd.Peer)
	Status() []bfd.Status
	Alive() time.Time // when its owner goroutine last ran (every second at least)
}

var bfdAuth = map[string]bfd.AuthType{
	policy.BFDAuthKeyedSHA1:      bfd.AuthKeyedSHA1,
	policy.BFDAuthMeticulousSHA1: bfd.AuthMeticulousSHA,
}

// bfdPeers turns the policy's bfd sections into sessions, reading every
// key file. Any failure refuses the policy (at start or reload).
func bfdPeers(p *policy.Policy) ([]bfd.Peer, error) {
	var out []bfd.Peer
	for _, g := range p.Gateways {
		b := g.BFD
		if b == nil {
			continue
		}
		peer := bfd.Peer{Name: g.Name, Remote: b.Peer, Local: b.Source, Interface: g.Interface, Multihop: b.Multihop,
			Config: bfd.Config{MinTx: b.MinTx, MinRx: b.MinRx, Multiplier: uint8(b.Multiplier), Passive: b.Passive, Demand: b.Demand}}
		if t, ok := bfdAuth[b.Auth]; ok {
			k, err := bfd.LoadKey(b.KeyFile, t, b.KeyID)
			if err != nil {
				return nil, fmt.Errorf("gateway %q: %w", g.Name, err)
			}
			peer.Key = k
		}
		out = append(out, peer)
	}
	return out, nil
}

// bfdEvidence adapts the BFD server to the detector's BFD interface: only
// a session leaving Up is negative advice, and not when the peer said it
// was administratively down (RFC 5882 §3.2).
type bfdEvidence struct{ s *bfd.Server }

func (e bfdEvidence) Updates() <-chan struct{} { return e.s.Updates() }
func (e bfdEvidence) Verify(gateway string)    { e.s.Verify(gateway) }

func (e bfdEvidence) Changes() []detector.BFDChange {
	var out []detector.BFDChange
	for _, c := range e.s.Drain() {
		out = append(out, adviceOf(c))
	}
	return out
}

func adviceOf(c bfd.Change) detector.BFDChange {
	dc := detector.BFDChange{Gateway: c.Name, Advice: detector.BFDNone}
	switch {
	case c.To == bfd.Up:
		dc.Advice = detector.BFDUp
		dc.Reason = fmt.Sprintf("bfd session up (tx %s, detection %s)", c.Info.TxInterval, c.Info.DetectTime)
	case c.From == bfd.Up && c.Info.RemoteState == bfd.AdminDown:
		dc.Reason = "bfd session disabled by the peer"
	case c.From == bfd.Up && c.To == bfd.Down:
		dc.Advice = detector.BFDDown
		dc.Reason = fmt.Sprintf("bfd session down (%s)", c.Diag)
	}
	return dc
}

// bfdLiveness reports the BFD server's owner goroutine. It goes round at
// least every second, so it counts as busy from its last round on: a
// stamp older than StallAfter means it is stuck. Before Run starts there
// is nothing to judge.
func bfdLiveness(s BFDSessions) LivenessSource {
	return func() []Worker {
		a := s.Alive()
		return []Worker{{Name: "bfd server", LastProgress: a, Busy: !a.IsZero()}}
	}
}
