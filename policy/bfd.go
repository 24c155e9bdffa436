package policy

import (
	"net/netip"
	"path/filepath"
	"time"
)

// BFD is a gateway's BFD session ([gateway.NAME.bfd]); nil when disabled.
type BFD struct {
	MinTx      time.Duration // desired min tx interval once up
	MinRx      time.Duration // required min rx interval
	Multiplier int           // detect multiplier
	Passive    bool          // wait for the peer to start (the responder role)
	Multihop   bool          // RFC 5883 (UDP 4784) instead of single hop (3784)
	Demand     bool          // demand mode: no periodic packets while the traffic evidence is good
	Peer       netip.Addr    // whom to talk to: the gateway's address unless set
	Source     netip.Addr    // local address; required for multihop
	Down       string        // BFDDownImmediate or BFDDownCheck
	Auth       string        // BFDAuthNone, BFDAuthKeyedSHA1, BFDAuthMeticulousSHA1
	KeyID      uint8
	KeyFile    string // absolute path of the secret; read by the daemon, never inline
}

// What a BFD Down does to the gateway (gateway.NAME.bfd.down).
const (
	BFDDownImmediate = "immediate" // down at once, as carrier loss
	BFDDownCheck     = "check"     // start a probe check, as unanswered traffic does
)

// BFD authentication types (gateway.NAME.bfd.auth).
const (
	BFDAuthNone           = "none"
	BFDAuthKeyedSHA1      = "keyed-sha1"
	BFDAuthMeticulousSHA1 = "meticulous-keyed-sha1"
)

// BFD interval bounds: 10 ms is FRR's floor too; above a minute BFD is no
// faster than the probes it is meant to beat.
const (
	BFDMinInterval     = 10 * time.Millisecond
	BFDMaxInterval     = time.Minute
	DefaultBFDInterval = 300 * time.Millisecond // FRR's default
	DefaultBFDMult     = 3
)

type rawBFD struct {
	Enabled    fBool     `toml:"enabled"`
	MinTx      fDuration `toml:"min_tx"`
	MinRx      fDuration `toml:"min_rx"`
	Multiplier fUint8    `toml:"multiplier"`
	Passive    fBool     `toml:"passive"`
	Multihop   fBool     `toml:"multihop"`
	Demand     fBool     `toml:"demand"`
	Peer       fAddr     `toml:"peer"`
	Source     fAddr     `toml:"source"`
	Down       fWord     `toml:"down"`
	Auth       fWord     `toml:"auth"`
	KeyID      fUint8    `toml:"key_id"`
	KeyFile    fWord     `toml:"key_file"`
}

// bfd validates [gateway.NAME.bfd]. Every key is checked even when
// enabled is false, so that a section switched off keeps being valid.
func (v *validator) bfd(r *rawBFD, g *Gateway, at func(...string) []string, obj string) *BFD {
	k := func(key string) []string { return at("bfd", key) }
	b := &BFD{MinTx: DefaultBFDInterval, MinRx: DefaultBFDInterval, Multiplier: DefaultBFDMult, Peer: g.Address}
	for _, d := range []struct {
		key string
		f   fDuration
		to  *time.Duration
	}{{"min_tx", r.MinTx, &b.MinTx}, {"min_rx", r.MinRx, &b.MinRx}} {
		if !check(v, d.f, k(d.key), obj) {
			continue
		}
		if iv := time.Duration(d.f.V); iv < BFDMinInterval || iv > BFDMaxInterval {
			v.addAt(k(d.key), obj, "%s %s is out of range %s..%s", d.key, iv, BFDMinInterval, BFDMaxInterval)
			continue
		}
		*d.to = time.Duration(d.f.V)
	}
	if check(v, r.Multiplier, k("multiplier"), obj) {
		if r.Multiplier.V == 0 {
			v.addAt(k("multiplier"), obj, "multiplier 0 is out of range 1..255")
		} else {
			b.Multiplier = int(r.Multiplier.V)
		}
	}
	for _, f := range []struct {
		key string
		f   fBool
		to  *bool
	}{{"passive", r.Passive, &b.Passive}, {"multihop", r.Multihop, &b.Multihop}, {"demand", r.Demand, &b.Demand}} {
		if check(v, f.f, k(f.key), obj) {
			*f.to = bool(f.f.V)
		}
	}
	family := func(key string, f fAddr, to *netip.Addr) {
		if !check(v, f, k(key), obj) {
			return
		}
		a := f.V.Addr.WithZone("")
		if g.hasFamily() && a.Is4() != (g.Family() == 4) {
			v.addAt(k(key), obj, "%s %s is not of the gateway's address family", key, a)
			return
		}
		*to = a
	}
	family("peer", r.Peer, &b.Peer)
	family("source", r.Source, &b.Source)
	if !b.Source.IsValid() && len(g.Sources) > 0 {
		b.Source = g.Sources[0]
	}
	if b.Multihop && !b.Source.IsValid() && g.hasFamily() {
		v.addAt(k("multihop"), obj, "multihop needs source, the local address the peer expects (or the gateway's sources)")
	}
	b.Down = v.enum(r.Down, k("down"), obj, BFDDownImmediate, BFDDownImmediate, BFDDownCheck)
	b.Auth = v.enum(r.Auth, k("auth"), obj, BFDAuthNone, BFDAuthNone, BFDAuthKeyedSHA1, BFDAuthMeticulousSHA1)
	if check(v, r.KeyID, k("key_id"), obj) {
		b.KeyID = uint8(r.KeyID.V)
	}
	if check(v, r.KeyFile, k("key_file"), obj) {
		b.KeyFile = string(r.KeyFile.V)
		if !filepath.IsAbs(b.KeyFile) {
			v.addAt(k("key_file"), obj, "key_file %q is not an absolute path", b.KeyFile)
		}
	}
	switch {
	case b.Auth != BFDAuthNone && b.KeyFile == "" && !r.KeyFile.Set:
		v.addAt(k("auth"), obj, "auth %q needs key_file, a file holding the secret (never the secret itself in the policy)", b.Auth)
	case b.Auth == BFDAuthNone && (r.KeyFile.Set || r.KeyID.Set):
		v.addAt(k("auth"), obj, "key_id and key_file need auth (keyed-sha1 or meticulous-keyed-sha1)")
	}
	if !check(v, r.Enabled, k("enabled"), obj) || !bool(r.Enabled.V) {
		return nil
	}
	return b
}
