package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/uplinkd/uplinkd/bfd"
	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
)

type fakeSessions struct{ alive time.Time }

func (fakeSessions) Set([]bfd.Peer)       {}
func (fakeSessions) Status() []bfd.Status { return nil }
func (f fakeSessions) Alive() time.Time   { return f.alive }

func TestBFDLiveness(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name  string
		alive time.Time
		stall bool
	}{
		{"not started", time.Time{}, false},
		{"went round a second ago", now.Add(-time.Second), false},
		{"stuck", now.Add(-StallAfter - time.Second), true},
	}
	for _, tt := range tests {
		ws := bfdLiveness(fakeSessions{tt.alive})()
		if len(ws) != 1 || ws[0].Stalled(now) != tt.stall {
			t.Errorf("%s: %+v, want stalled=%v", tt.name, ws, tt.stall)
		}
	}
}

// TestAdviceOf: only a session leaving Up is negative advice, and not when
// the peer disabled it.
func TestAdviceOf(t *testing.T) {
	tests := []struct {
		c    bfd.Change
		want detector.BFDAdvice
	}{
		{bfd.Change{Transition: bfd.Transition{From: bfd.Init, To: bfd.Up}}, detector.BFDUp},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Down, To: bfd.Up}}, detector.BFDUp},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Up, To: bfd.Down, Diag: bfd.DiagTimeExpired}, Info: bfd.Info{RemoteState: bfd.Down}}, detector.BFDDown},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Up, To: bfd.Down, Diag: bfd.DiagNeighborDown}, Info: bfd.Info{RemoteState: bfd.AdminDown}}, detector.BFDNone},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Down, To: bfd.Init}}, detector.BFDNone},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Init, To: bfd.Down, Diag: bfd.DiagTimeExpired}}, detector.BFDNone},
		{bfd.Change{Transition: bfd.Transition{From: bfd.Up, To: bfd.AdminDown}}, detector.BFDNone},
	}
	for _, tt := range tests {
		if got := adviceOf(tt.c).Advice; got != tt.want {
			t.Errorf("%s → %s (remote %s): %s, want %s", tt.c.From, tt.c.To, tt.c.Info.RemoteState, got, tt.want)
		}
	}
}

// TestBFDPeers: the policy's sections become sessions, with keys read
// from their files; an unreadable key refuses the policy.
func TestBFDPeers(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "isp1.key")
	if err := os.WriteFile(key, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp1.bfd]
enabled = true
min_tx = "50ms"
demand = true
auth = "keyed-sha1"
key_id = 3
key_file = "` + key + `"

[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"

[group.wan]
gateways = ["isp1", "isp2"]
`
	p, err := policy.Parse("bfd.toml", []byte(text), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bfdPeers(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []bfd.Peer{{Name: "isp1", Remote: netip.MustParseAddr("198.18.1.1"), Interface: "eth1",
		Config: bfd.Config{MinTx: 50 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3, Demand: true,
			Key: &bfd.Key{Type: bfd.AuthKeyedSHA1, ID: 3, Secret: []byte("s3cret")}}}}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bfdPeers(p); err == nil {
		t.Error("a world-readable key file was accepted")
	}
}
