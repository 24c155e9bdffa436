package policy

import (
	"strings"
	"testing"
)

func TestClosestKey(t *testing.T) {
	for _, tc := range []struct {
		parent []string
		key    string
		want   string // "" for no suggestion
	}{
		{[]string{"gateway", "isp1"}, "wieght", "weight"},
		{[]string{"gateway", "isp1"}, "adress", "address"},
		{[]string{"gateway", "isp1"}, "Interface", "interface"},
		{[]string{"gateway", "isp1", "probe"}, "pinn", "pin"},
		{[]string{"gateway", "isp1", "detect"}, "down_cuont", "down_count"},
		{[]string{"profile", "fast"}, "intervall", "interval"},
		{[]string{"group", "wan"}, "last_resrot", "last_resort"},
		{[]string{"daemon"}, "listne", "listen"},
		{[]string{"gateway", "isp1"}, "colour", ""},
		{[]string{"gateway", "isp1"}, "ab", ""},
		{[]string{"nosuch"}, "weight", ""},
	} {
		got, _ := closest(tc.key, knownKeys(tc.parent))
		if got != tc.want {
			t.Errorf("closest(%q under %v) = %q, want %q", tc.key, tc.parent, got, tc.want)
		}
	}
}

func TestUnknownKeySuggestsWithPosition(t *testing.T) {
	_, err := Parse("p.toml", []byte("[gateway.isp1]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[gateway.isp1.probe]\npinn = \"mark\"\n[gatway.x]\n"), Options{})
	want := []string{
		`p.toml:5:1: gateway "isp1": unknown key "pinn" in probe; did you mean "pin"?`,
		`p.toml:6:1: unknown section [gatway] (sections are daemon, kernel, profile, gateway, group, rule, announce, hook, condition); did you mean [gateway]?`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
