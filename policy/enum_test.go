package policy

import (
	"encoding"
	"testing"
)

// TestEnumsUnmarshalText: every enum value decodes to its constant, and
// anything else is refused with the key and the choices.
func TestEnumsUnmarshalText(t *testing.T) {
	var (
		g Gating
		p Pin
		o OnDown
		l LastResort
	)
	for _, tc := range []struct {
		into    encoding.TextUnmarshaler
		in      string
		get     func() string
		want    string
		wantErr string
	}{
		{&g, " always ", func() string { return string(g) }, string(GatingAlways), ""},
		{&g, "sometimes", nil, "", `gating "sometimes" is not one of gated, always, never`},
		{&p, "mark", func() string { return string(p) }, string(PinMark), ""},
		{&p, "Device", nil, "", `pin "Device" is not one of device, source, mark`},
		{&o, "failover", func() string { return string(o) }, string(TableFailover), ""},
		{&o, "", nil, "", `on_down "" is not one of keep, failover`},
		{&l, "blackhole", func() string { return string(l) }, string(LastResortBlackhole), ""},
		{&l, "drop", nil, "", `last_resort "drop" is not one of keep, unreachable, blackhole, remove`},
	} {
		err := tc.into.UnmarshalText([]byte(tc.in))
		switch {
		case tc.wantErr != "":
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%T(%q): error %v, want %q", tc.into, tc.in, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%T(%q): %v", tc.into, tc.in, err)
		case tc.get() != tc.want:
			t.Errorf("%T(%q) = %q, want %q", tc.into, tc.in, tc.get(), tc.want)
		}
	}
}
