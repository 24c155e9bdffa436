package detector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// probeResult is the outcome of one round: every probe target of one
// gateway, sent together.
type probeResult struct {
	Gateway string
	Gen     int
	OK      bool
	RTT     time.Duration
	Detail  string
	Skipped bool        // no probe could be made: no evidence either way
	RTTs    []targetRTT // each target that answered before the verdict, for its timeout
}

// targetRTT is one target's answer in a round.
type targetRTT struct {
	key string // rttKey
	rtt time.Duration
}

// roundSpec is everything a round needs, copied out of the health
// goroutine so that the round's goroutine shares nothing with it.
type roundSpec struct {
	gateway string
	gen     int
	gw      netip.Addr
	iface   string
	index   int
	probes  []probeSpec
	probe   policy.Probe // MinUp, Pin and Mark
	sources []netip.Addr
	hw      net.HardwareAddr
	timeout time.Duration // the longest of timeouts: the round's own bound
	// timeouts[i] is probes[i]'s, learned from that target's RTTs.
	timeouts []time.Duration
	// shared says other gateways sit on the same interface: the probe to
	// the gateway itself then goes as a frame to its MAC too, or it could
	// follow a per-source table to another gateway on the link.
	shared bool
}

// launch starts one probe round for gs, if it has anything to probe.
func (d *Detector) launch(ctx context.Context, gs *gwState, now time.Time) bool {
	is := d.ifaces[gs.g.Interface]
	if is == nil || is.index == 0 || d.held[gs.g.Name] != "" {
		return false
	}
	p := gs.g.Probe
	probes := roundProbes(&p, gs.g.Address)
	if len(probes) == 0 {
		return false
	}
	if gs.m.Sampling(now) {
		probes = gs.qualityPick(probes)
	}
	spec := roundSpec{gateway: gs.g.Name, gen: gs.gen, gw: gs.g.Address, iface: gs.g.Interface, index: is.index, shared: is.shared,
		probes: probes, probe: p, sources: gs.g.Sources, hw: gs.hw}
	spec.timeouts, spec.timeout = gs.timeouts(probes)
	gs.inflight++
	gs.rounds = append(gs.rounds, now)
	id := d.roundsLive.start(now)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		r := d.round(ctx, spec)
		d.roundsLive.end(id, d.now())
		select {
		case d.results <- r:
		case <-ctx.Done():
		}
	}()
	return true
}

func (d *Detector) onResult(ctx context.Context, r probeResult, now time.Time) {
	gs := d.gws[r.Gateway]
	if gs == nil || gs.gen != r.Gen {
		return
	}
	gs.inflight--
	if r.Skipped {
		return
	}
	d.met.evidenceEvent(r.Gateway, SourceProbe, r.OK)
	if r.OK && d.met != nil {
		d.met.rtt.WithLabelValues(r.Gateway).Observe(r.RTT.Seconds())
	}
	for _, tr := range r.RTTs {
		gs.learnRTT(tr.key, tr.rtt)
	}
	d.log.Debug("probe round", "gateway", r.Gateway, "ok", r.OK, "rtt", r.RTT, "detail", r.Detail)
	d.observe(ctx, gs, Event{Kind: EvProbe, Iface: gs.g.Interface, OK: r.OK, RTT: r.RTT, Detail: r.Detail}, now)
}

// outcome is one probe of a round.
type outcome struct {
	spec    probeSpec
	rtt     time.Duration
	err     error
	skipped bool // no probe could be made
}

// round runs every probe target of one gateway at once. It succeeds when
// the gateway itself (and its neighbour entry, when probed) answers and
// at least MinUp remote targets do. It returns as soon as the verdict is
// certain: a dead gateway is not kept waiting for a slower target's
// timeout. The probes still running finish on their own (bounded by the
// timeout) and count in the metrics.
func (d *Detector) round(ctx context.Context, spec roundSpec) probeResult {
	var hwOnce sync.Once
	var hw net.HardwareAddr
	resolveHW := func() net.HardwareAddr {
		hwOnce.Do(func() { hw = d.gatewayHW(ctx, spec, spec.timeout/2) })
		return hw
	}
	outs := make(chan outcome, len(spec.probes))
	for i, ps := range spec.probes {
		r := spec
		if i < len(spec.timeouts) && spec.timeouts[i] > 0 {
			r.timeout = spec.timeouts[i]
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			outs <- d.runProbe(ctx, r, ps, resolveHW)
		}()
	}
	t := newTally(spec)
	ok := false
	for range spec.probes {
		var decided bool
		if decided, ok = t.add(<-outs); decided {
			break
		}
	}
	return t.result(probeResult{Gateway: spec.gateway, Gen: spec.gen}, ok)
}

// runProbe makes one probe of a round.
func (d *Detector) runProbe(ctx context.Context, r roundSpec, ps probeSpec, hw func() net.HardwareAddr) outcome {
	k := kindOf(ps.kind)
	var rtt time.Duration
	var err error
	if k.run != nil {
		rtt, err = k.run(d, ctx, r, ps)
		if errors.Is(err, errNeighProbeUnsupported) {
			return outcome{spec: ps, skipped: true}
		}
	} else {
		t := d.target(r, ps)
		byFrame := ps.role == roleRemote || (ps.role == roleGateway && r.shared)
		if byFrame && k.frames && r.gw.IsValid() && (t.Pin == policy.PinDevice || t.Pin == "") {
			t.HwAddr = hw()
		}
		rtt, err = d.pr.Probe(ctx, t)
	}
	d.met.probe(r.gateway, ps.kind, ps.target, err == nil, rtt)
	return outcome{spec: ps, rtt: rtt, err: err}
}

// target is what the Prober is asked to send for one probe.
func (d *Detector) target(r roundSpec, ps probeSpec) Target {
	t := Target{Gateway: r.gateway, Kind: ps.kind, Addr: ps.addr, Iface: r.iface, IfIndex: r.index, NextHop: r.gw,
		Pin: r.probe.Pin, Mark: r.probe.Mark, Timeout: r.timeout, HTTP: ps.http, DNS: ps.dns}
	t.Source = d.source(r, ps.addr.Addr())
	if ps.role == roleGateway {
		t.OnLink = true
		if t.Pin == policy.PinMark {
			// The gateway is on-link: the device pins it exactly.
			t.Pin = policy.PinDevice
		}
	}
	return t
}

// tally adds up a round's outcomes until its verdict is certain.
type tally struct {
	minUp, remoteN      int
	pending             int // required probes (gateway, neighbour) not answered yet
	hasGW               bool
	remoteOK, remoteBad int
	made                int
	gwRTT, remoteRTT    time.Duration
	failures            []string
	rtts                []targetRTT
}

func newTally(spec roundSpec) *tally {
	t := &tally{}
	for _, ps := range spec.probes {
		switch ps.role {
		case roleRemote:
			t.remoteN++
		case roleGateway:
			t.hasGW = true
			t.pending++
		default:
			t.pending++
		}
	}
	t.minUp = min(max(spec.probe.MinUp, 1), t.remoteN)
	return t
}

// add counts one outcome and says whether the verdict is certain, and
// then whether the round succeeded.
func (t *tally) add(o outcome) (decided, ok bool) {
	if !o.skipped {
		t.made++
	}
	if o.err != nil {
		t.failures = append(t.failures, fmt.Sprintf("%s: %s", o.spec.what, shortErr(o.err)))
	} else if !o.skipped {
		t.rtts = append(t.rtts, targetRTT{rttKey(o.spec), o.rtt})
	}
	switch {
	case o.skipped:
		t.pending--
	case o.spec.role == roleRemote && o.err == nil:
		t.remoteOK++
		t.remoteRTT += o.rtt
	case o.spec.role == roleRemote:
		t.remoteBad++
	case o.err != nil:
		return true, false // a required probe failed, whatever the others say
	default:
		if o.spec.role == roleGateway {
			t.gwRTT = o.rtt
		}
		t.pending--
	}
	if t.remoteLost() {
		return true, false
	}
	done := t.pending == 0 && t.remoteOK >= t.minUp
	return done, done
}

// remoteLost says too few remote targets can still answer.
func (t *tally) remoteLost() bool { return t.remoteN > 0 && t.remoteBad > t.remoteN-t.minUp }

func (t *tally) result(res probeResult, ok bool) probeResult {
	res.OK, res.Skipped = ok, t.made == 0
	switch {
	case t.hasGW:
		res.RTT = t.gwRTT
	case t.remoteOK > 0:
		res.RTT = t.remoteRTT / time.Duration(t.remoteOK)
	}
	if !ok && t.remoteLost() {
		t.failures = append(t.failures, fmt.Sprintf("%d of %d remote targets answered, %d needed", t.remoteOK, t.remoteN, t.minUp))
	}
	res.Detail = reasonList(t.failures)
	res.RTTs = t.rtts
	return res
}

func shortErr(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errTimeout):
		return "no reply"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, unix.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, unix.ECONNREFUSED):
		return "refused"
	}
	return err.Error()
}
