package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a session state as carried in the Sta field (§4.1).
type State uint8

const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "admin-down"
	case Down:
		return "down"
	case Init:
		return "init"
	case Up:
		return "up"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText makes states readable in status JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote (status clients).
func (s *State) UnmarshalText(b []byte) error {
	for _, v := range []State{AdminDown, Down, Init, Up} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("decoding bfd state %q: unknown", b)
}

// Diag is the diagnostic code (§4.1): why the sender's session last left Up.
type Diag uint8

const (
	DiagNone              Diag = 0
	DiagTimeExpired       Diag = 1 // Control Detection Time Expired
	DiagEchoFailed        Diag = 2
	DiagNeighborDown      Diag = 3 // Neighbor Signaled Session Down
	DiagForwardingReset   Diag = 4
	DiagPathDown          Diag = 5
	DiagConcatPathDown    Diag = 6
	DiagAdminDown         Diag = 7
	DiagRevConcatPathDown Diag = 8
)

var diagNames = [...]string{
	"none", "control-detection-time-expired", "echo-function-failed",
	"neighbor-signaled-session-down", "forwarding-plane-reset", "path-down",
	"concatenated-path-down", "administratively-down", "reverse-concatenated-path-down",
}

func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return fmt.Sprintf("diag(%d)", uint8(d))
}

// MarshalText makes diags readable in status JSON.
func (d Diag) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText wrote (status clients).
func (d *Diag) UnmarshalText(b []byte) error {
	for i, n := range diagNames {
		if n == string(b) {
			*d = Diag(i)
			return nil
		}
	}
	var v uint8
	if _, err := fmt.Sscanf(string(b), "diag(%d)", &v); err != nil {
		return fmt.Errorf("decoding bfd diag %q: unknown", b)
	}
	*d = Diag(v)
	return nil
}

// AuthType is the Auth Type field of the authentication section (§4.1).
type AuthType uint8

const (
	AuthNone          AuthType = 0
	AuthSimple        AuthType = 1
	AuthKeyedMD5      AuthType = 2
	AuthMeticulousMD5 AuthType = 3
	AuthKeyedSHA1     AuthType = 4
	AuthMeticulousSHA AuthType = 5
)

func (a AuthType) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthSimple:
		return "simple"
	case AuthKeyedMD5:
		return "keyed-md5"
	case AuthMeticulousMD5:
		return "meticulous-keyed-md5"
	case AuthKeyedSHA1:
		return "keyed-sha1"
	case AuthMeticulousSHA:
		return "meticulous-keyed-sha1"
	}
	return fmt.Sprintf("auth(%d)", uint8(a))
}

// Auth is a decoded authentication section. Only the SHA1 forms are
// understood beyond their type; the others decode with Data raw so that a
// session can say what the peer asked for.
type Auth struct {
	Type   AuthType
	KeyID  uint8
	Seq    uint32
	Digest [20]byte // SHA1 forms: the digest as received
	Data   []byte   // other types: the section after Type and Len
}

// Packet is a BFD Control packet (§4.1). Intervals are carried in
// microseconds on the wire and as time.Duration here.
type Packet struct {
	Version    uint8
	Diag       Diag
	State      State
	Poll       bool
	Final      bool
	CPI        bool // Control Plane Independent
	Demand     bool
	Multipoint bool
	DetectMult uint8
	MyDiscr    uint32
	YourDiscr  uint32
	MinTx      time.Duration // Desired Min TX Interval
	MinRx      time.Duration // Required Min RX Interval
	MinEchoRx  time.Duration // Required Min Echo RX Interval
	Auth       *Auth
}

const (
	headerLen  = 24
	sha1Len    = 28 // Type, Len, Key ID, Reserved, Sequence, 20-byte digest
	maxPktLen  = headerLen + sha1Len
	version    = 1
	flagPoll   = 0x20
	flagFinal  = 0x10
	flagCPI    = 0x08
	flagAuth   = 0x04
	flagDemand = 0x02
	flagMulti  = 0x01
)

// Errors of Decode; the reception checks of §6.8.6 that need no session.
var (
	ErrShort      = errors.New("shorter than its length field or than 24 bytes")
	ErrVersion    = errors.New("version is not 1")
	ErrDetectMult = errors.New("detect multiplier is zero")
	ErrMultipoint = errors.New("multipoint bit set")
	ErrMyDiscr    = errors.New("my discriminator is zero")
	ErrAuthLen    = errors.New("authentication section length does not match its type")
)

// Decode parses b as a BFD Control packet and applies the session-less
// checks of §6.8.6. Trailing bytes beyond the Length field are ignored, as
// the RFC allows.
func Decode(b []byte) (*Packet, error) {
	if len(b) < headerLen {
		return nil, ErrShort
	}
	p := &Packet{
		Version:    b[0] >> 5,
		Diag:       Diag(b[0] & 0x1f),
		State:      State(b[1] >> 6),
		Poll:       b[1]&flagPoll != 0,
		Final:      b[1]&flagFinal != 0,
		CPI:        b[1]&flagCPI != 0,
		Demand:     b[1]&flagDemand != 0,
		Multipoint: b[1]&flagMulti != 0,
		DetectMult: b[2],
		MyDiscr:    binary.BigEndian.Uint32(b[4:]),
		YourDiscr:  binary.BigEndian.Uint32(b[8:]),
		MinTx:      usec(binary.BigEndian.Uint32(b[12:])),
		MinRx:      usec(binary.BigEndian.Uint32(b[16:])),
		MinEchoRx:  usec(binary.BigEndian.Uint32(b[20:])),
	}
	if p.Version != version {
		return nil, ErrVersion
	}
	n := int(b[3])
	hasAuth := b[1]&flagAuth != 0
	if n < headerLen || (hasAuth && n < headerLen+2) || n > len(b) {
		return nil, ErrShort
	}
	if p.DetectMult == 0 {
		return nil, ErrDetectMult
	}
	if p.Multipoint {
		return nil, ErrMultipoint
	}
	if p.MyDiscr == 0 {
		return nil, ErrMyDiscr
	}
	if hasAuth {
		a, err := decodeAuth(b[headerLen:n])
		if err != nil {
			return nil, err
		}
		p.Auth = a
	} else if n != headerLen {
		return nil, ErrShort
	}
	return p, nil
}

func decodeAuth(b []byte) (*Auth, error) {
	a := &Auth{Type: AuthType(b[0])}
	l := int(b[1])
	if l != len(b) || l < 2 {
		return nil, ErrAuthLen
	}
	switch a.Type {
	case AuthKeyedSHA1, AuthMeticulousSHA:
		if l != sha1Len {
			return nil, ErrAuthLen
		}
		a.KeyID = b[2]
		a.Seq = binary.BigEndian.Uint32(b[4:])
		copy(a.Digest[:], b[8:])
	default:
		a.Data = append([]byte(nil), b[2:]...)
	}
	return a, nil
}

// Marshal encodes p. With an SHA1 auth section the digest is computed over
// the packet with key in its place (§6.7.4); key is ignored otherwise.
func (p *Packet) Marshal(key []byte) ([]byte, error) {
	n := headerLen
	if p.Auth != nil {
		switch p.Auth.Type {
		case AuthKeyedSHA1, AuthMeticulousSHA:
			n += sha1Len
		default:
			return nil, fmt.Errorf("encoding auth type %s: not supported", p.Auth.Type)
		}
	}
	b := make([]byte, n)
	b[0] = version<<5 | uint8(p.Diag)&0x1f
	b[1] = uint8(p.State) << 6
	for _, f := range []struct {
		on  bool
		bit byte
	}{{p.Poll, flagPoll}, {p.Final, flagFinal}, {p.CPI, flagCPI}, {p.Auth != nil, flagAuth}, {p.Demand, flagDemand}, {p.Multipoint, flagMulti}} {
		if f.on {
			b[1] |= f.bit
		}
	}
	b[2] = p.DetectMult
	b[3] = byte(n)
	binary.BigEndian.PutUint32(b[4:], p.MyDiscr)
	binary.BigEndian.PutUint32(b[8:], p.YourDiscr)
	binary.BigEndian.PutUint32(b[12:], toUsec(p.MinTx))
	binary.BigEndian.PutUint32(b[16:], toUsec(p.MinRx))
	binary.BigEndian.PutUint32(b[20:], toUsec(p.MinEchoRx))
	if p.Auth != nil {
		a := b[headerLen:]
		a[0], a[1], a[2] = byte(p.Auth.Type), sha1Len, p.Auth.KeyID
		binary.BigEndian.PutUint32(a[4:], p.Auth.Seq)
		d := sha1Digest(b, key)
		copy(a[8:], d[:])
	}
	return b, nil
}

func usec(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

func toUsec(d time.Duration) uint32 {
	us := d / time.Microsecond
	if us < 0 {
		return 0
	}
	if us > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(us)
}
