package bfd

import (
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Key is a session's authentication configuration (§6.7.4). SHA1 is
// weak as a hash but is what RFC 5880 specifies and what peers implement;
// the key still keeps an off-path host from faking a session.
type Key struct {
	Type   AuthType // AuthKeyedSHA1 or AuthMeticulousSHA
	ID     uint8
	Secret []byte // at most 20 bytes, zero-padded
}

// ErrAuth is wrapped by every authentication failure.
var ErrAuth = errors.New("authentication failed")

// sha1Digest computes the digest of an encoded packet b whose SHA1 section
// is in place: the Auth Key/Digest field is replaced by the secret, zero
// padded to 20 bytes, and the whole packet hashed (§6.7.4). b is not
// modified.
func sha1Digest(b, secret []byte) [20]byte {
	tmp := make([]byte, len(b))
	copy(tmp, b)
	f := tmp[headerLen+8 : headerLen+sha1Len]
	clear(f)
	copy(f, secret)
	return sha1.Sum(tmp)
}

// rxAuth is the receive side of one session's authentication: the
// sequence window of §6.7.4.
type rxAuth struct {
	known bool
	seq   uint32
}

// check verifies the SHA1 section of the raw packet b (already decoded as
// p) against k and the sequence state, and advances the state on success.
// detectMult bounds the window of the non-meticulous form (3 × Detect Mult).
func (r *rxAuth) check(k *Key, p *Packet, b []byte) error {
	a := p.Auth
	switch {
	case k == nil && a == nil:
		return nil
	case k == nil:
		return fmt.Errorf("%w: the peer authenticates and this session does not", ErrAuth)
	case a == nil:
		return fmt.Errorf("%w: the peer does not authenticate", ErrAuth)
	case a.Type != k.Type:
		return fmt.Errorf("%w: the peer uses %s, not %s", ErrAuth, a.Type, k.Type)
	case a.KeyID != k.ID:
		return fmt.Errorf("%w: the peer uses another key id", ErrAuth)
	}
	if r.known {
		// Sequence numbers are compared modulo 2^32 (serial arithmetic).
		d := a.Seq - r.seq
		lim := uint32(3 * uint32(p.DetectMult))
		if k.Type == AuthMeticulousSHA {
			if d == 0 || d > lim {
				return fmt.Errorf("%w: sequence number out of window", ErrAuth)
			}
		} else if d > lim {
			return fmt.Errorf("%w: sequence number out of window", ErrAuth)
		}
	}
	want := sha1Digest(b[:headerLen+sha1Len], k.Secret)
	if subtle.ConstantTimeCompare(want[:], a.Digest[:]) != 1 {
		return fmt.Errorf("%w: digest mismatch", ErrAuth)
	}
	r.known, r.seq = true, a.Seq
	return nil
}
