package detector

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// What the external tests (package detector_test) may see of the
// internals, and nothing else ships it.

// NewSocketProberDgram opens a prober with unprivileged ICMP datagram
// sockets only.
func NewSocketProberDgram(ns netns.NsHandle, log *slog.Logger) (*SocketProber, error) {
	return newSocketProber(ns, log, true, nil)
}

// EchoID is the echo id of the raw sockets; Seq the last sequence used.
func (p *SocketProber) EchoID() uint16 { return p.id }
func (p *SocketProber) Seq() uint16    { return uint16(p.seq.Load()) }

// Datagram says both ICMP sockets are unprivileged datagram ones.
func (p *SocketProber) Datagram() bool { return p.c4.dgram && p.c6 != nil && p.c6.dgram }

// ProbeCounts reads uplinkd_probes_sent_total and _failed_total of gw and kind.
func (d *Detector) ProbeCounts(gw string, kind ProbeKind) (sent, failed float64) {
	return testutil.ToFloat64(d.met.probesSent.WithLabelValues(gw, string(kind))),
		testutil.ToFloat64(d.met.probesFailed.WithLabelValues(gw, string(kind)))
}

// Handle is the adapter's netlink handle; LinkStats its RTM_GETSTATS read.
func (k *Netlink) Handle() *netlink.Handle               { return k.h }
func (k *Netlink) LinkStats(index int) (Counters, error) { return k.linkStats(index) }

// TokenLen is the random payload a reply must echo back.
const TokenLen = tokenLen

// TargetSuccess reads uplinkd_probe_target_success of one target.
func (d *Detector) TargetSuccess(gw string, kind ProbeKind, target string) float64 {
	return testutil.ToFloat64(d.met.targetOK.WithLabelValues(gw, string(kind), target))
}
