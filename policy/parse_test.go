package policy

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the '# want:' lines of testdata/invalid-*.toml")

const wantPrefix = "# want: "

func testdataFiles(t testing.TB, pattern string) []string {
	files, err := filepath.Glob(filepath.Join("..", "testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata matching %s (err %v)", pattern, err)
	}
	return files
}

var testTables = Options{TableNames: map[string]uint32{"isp1": 201, "isp2": 202}}

func TestValidTestdata(t *testing.T) {
	for _, f := range testdataFiles(t, "*.toml") {
		if strings.HasPrefix(filepath.Base(f), "invalid-") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(filepath.Base(f), data, testTables)
			if err != nil {
				t.Fatalf("valid policy refused:\n%v", err)
			}
			if len(p.Gateways) == 0 {
				t.Errorf("policy has no gateways")
			}
		})
	}
}

// TestInvalidTestdata checks that each invalid-*.toml fails with exactly
// the messages in its leading "# want:" lines, in order.
func TestInvalidTestdata(t *testing.T) {
	for _, f := range testdataFiles(t, "invalid-*.toml") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			lines := strings.Split(string(data), "\n")
			for _, l := range lines {
				if !strings.HasPrefix(l, wantPrefix) {
					break
				}
				want = append(want, strings.TrimPrefix(l, wantPrefix))
			}
			_, err = Parse(filepath.Base(f), data, testTables)
			if err == nil {
				t.Fatalf("invalid policy accepted")
			}
			got := strings.Split(err.Error(), "\n")
			if *update {
				body := strings.Join(lines[len(want):], "\n")
				var hdr strings.Builder
				for _, g := range got {
					hdr.WriteString(wantPrefix + g + "\n")
				}
				if err := os.WriteFile(f, []byte(hdr.String()+body), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if len(want) == 0 {
				t.Fatalf("%s has no %q lines", f, wantPrefix)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("errors differ (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultsAndResolution(t *testing.T) {
	src := `
[daemon]
rule_priorities = "500-599"

[gateway.dir1]
address = "198.18.1.1"
interface = "eth1"
sources = ["198.18.1.2", "198.18.1.3"]
table = "isp1"

[gateway.dir2]
address = "198.18.2.1"
interface = "eth2"
sources = ["198.18.2.2"]
table = 202
weight = 5
tier = 2

[rule.pinned]
iif = "eth0"
gateway = "dir2"
priority = 500

[group.wan]
gateways = ["dir2", "dir1"]
`
	p, err := Parse("t.toml", []byte(src), testTables)
	if err != nil {
		t.Fatal(err)
	}
	type ruleView struct {
		Name     string
		Priority uint32
		From     string
		IIF      string
		Table    uint32
		Family   int
	}
	var got []ruleView
	for _, r := range p.Rules {
		from := ""
		if r.From.IsValid() {
			from = r.From.String()
		}
		got = append(got, ruleView{r.Name, r.Priority, from, r.IIF, r.Table, r.Family})
	}
	want := []ruleView{
		{"pinned", 500, "", "eth0", 202, 4},
		{"gateway/dir1/198.18.1.2", 501, "198.18.1.2/32", "", 201, 4},
		{"gateway/dir1/198.18.1.3", 502, "198.18.1.3/32", "", 201, 4},
		{"gateway/dir2/198.18.2.2", 503, "198.18.2.2/32", "", 202, 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	g := p.Group("wan")
	if diff := cmp.Diff(&Group{Name: "wan", Gateways: []string{"dir2", "dir1"}, Table: TableMain, Family: 4, LastResort: LastResortKeep,
		Buckets: DefaultBuckets, IdleTimer: DefaultIdleTimer, UnbalancedTimer: DefaultUnbalancedTimer}, g); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
	d2 := p.Gateway("dir2")
	if d2.Weight != 5 || d2.DegradedWeight != 5 || d2.Tier != 2 || d2.OnDown != TableKeep || d2.Profile.Name != "default" {
		t.Errorf("dir2 defaults wrong: %+v", d2)
	}
	if diff := cmp.Diff(Daemon{Listen: DefaultListen, RouteProtocol: DefaultRouteProtocol, RulePriority: PriorityBand{500, 599},
		LogFormat: "text", LogLevel: "info", OnExit: OnExitLeave, ControlSocket: DefaultControlSocket, ResyncEvery: DefaultResync, Multipath: MultipathAuto}, p.Daemon); diff != "" {
		t.Errorf("daemon (-want +got):\n%s", diff)
	}
}

func TestProfileOverrides(t *testing.T) {
	src := `
[profile.slow]
interval = "5s"
down_count = 5

[gateway.a]
address = "2001:db8:1::1"
interface = "eth1"
profile = "slow"

[gateway.a.detect]
down_count = 2
loss_threshold = "5%"

[group.wan]
gateways = ["a"]
`
	p, err := Parse("t.toml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultProfile()
	want.Name = "slow"
	want.Interval = 5 * time.Second
	want.DownCount = 2
	want.LossThreshold = 0.05
	if diff := cmp.Diff(&want, p.Gateway("a").Profile); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
	if p.Profiles["slow"].DownCount != 5 {
		t.Errorf("override leaked into the named profile: %+v", p.Profiles["slow"])
	}
}

func TestTypes(t *testing.T) {
	tests := []struct {
		name    string
		v       interface{ UnmarshalText([]byte) error }
		in      string
		wantErr string
	}{
		{"weight ok", new(Weight), "256", ""},
		{"weight low", new(Weight), "0", "weight 0 is out of range 1..256"},
		{"weight text", new(Weight), "heavy", `weight "heavy" is not a whole number`},
		{"table number", new(Table), "201", ""},
		{"table name", new(Table), "isp1", ""},
		{"table negative", new(Table), "-1", "table -1 is negative"},
		{"table bad name", new(Table), "isp one", `table name "isp one" has a character rt_tables cannot hold`},
		{"duration", new(Duration), "250ms", ""},
		{"duration negative", new(Duration), "-1s", `duration "-1s" is negative`},
		{"ratio pct", new(Ratio), "1%", ""},
		{"ratio float", new(Ratio), "0.010000", ""},
		{"ratio high", new(Ratio), "1.5", "ratio 1.5 is out of range 0..1 (0%..100%)"},
		{"mark", new(Mark), "0x10/0xff", ""},
		{"mark outside mask", new(Mark), "0x100/0xff", "fwmark 0x100/0xff has bits outside its mask"},
		{"prefix host", new(Prefix), "198.18.1.2", ""},
		{"prefix host bits", new(Prefix), "198.18.1.2/24", "prefix 198.18.1.2/24 has host bits set (did you mean 198.18.1.0/24?)"},
		{"band", new(PriorityBand), "100-200", ""},
		{"band reversed", new(PriorityBand), "200-100", "rule priority band 200-100 must lie within 1..32765, low to high (0, 32766 and 32767 hold the kernel's own rules)"},
		{"addr v6", new(Addr), "2001:db8::1", ""},
		{"addr multicast", new(Addr), "224.0.0.1", "address 224.0.0.1 cannot be used here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.UnmarshalText([]byte(tt.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("UnmarshalText(%q) error = %q, want %q", tt.in, got, tt.wantErr)
			}
		})
	}
	var p Prefix
	if err := p.UnmarshalText([]byte("2001:db8::5")); err != nil || p.Prefix != netip.MustParsePrefix("2001:db8::5/128") {
		t.Errorf("bare v6 address = %v, %v", p, err)
	}
}

func TestKeyIndex(t *testing.T) {
	src := `# comment
[gateway.isp1]
address = "198.18.1.1"   # trailing
  weight = 2
probe.icmp = [
  "198.18.9.9",
  "weight = 3",
]
desc = """
fake = 1
"""
[gateway."isp 2"]
tier = 1
`
	idx := indexKeys([]byte(src))
	got := map[string]pos{}
	for k, v := range idx {
		got[k] = v
	}
	want := map[string]pos{
		"gateway.isp1":            {2, 1, 1},
		"gateway.isp1.address":    {3, 11, 1},
		"gateway.isp1.weight":     {4, 12, 3},
		"gateway.isp1.probe.icmp": {5, 14, 1},
		"gateway.isp1.desc":       {9, 8, 1},
		"gateway.isp 2":           {12, 1, 1},
		"gateway.isp 2.tier":      {13, 8, 1},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(pos{})); diff != "" {
		t.Errorf("index (-want +got):\n%s", diff)
	}
}

func TestRTTables(t *testing.T) {
	got := ParseRTTables([]byte("# comment\n255\tlocal\n201 isp1 # first ISP\nbogus line\n0x10 hex\n"))
	want := map[string]uint32{"local": 255, "isp1": 201, "hex": 16}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rt_tables (-want +got):\n%s", diff)
	}
}

// FuzzParse checks that no input makes Parse panic, and that a policy it
// accepts is internally consistent.
func FuzzParse(f *testing.F) {
	for _, file := range testdataFiles(f, "*.toml") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.toml", data, testTables)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error is %T, want Errors", err)
			}
			return
		}
		band := p.Daemon.RulePriority
		seen := map[uint32]bool{}
		for _, r := range p.Rules {
			if r.Priority < band.Min || r.Priority > band.Max || seen[r.Priority] {
				t.Fatalf("rule %q priority %d outside band %v or duplicated", r.Name, r.Priority, band)
			}
			seen[r.Priority] = true
		}
		for _, g := range p.Gateways {
			if g.Weight < 1 || g.Weight > 256 || !g.Address.IsValid() || g.Profile == nil {
				t.Fatalf("accepted gateway is inconsistent: %+v", g)
			}
		}
	})
}

func TestConntrackFlush(t *testing.T) {
	src := `
[gateway.snat]
address = "198.18.1.1"
interface = "eth1"
flush_conntrack = "on_down"
snat_addresses = ["198.18.1.2", "198.18.1.3", "198.18.1.2"]

[gateway.marked]
address = "198.18.2.1"
interface = "eth2"
flush_conntrack = "both"
conntrack_mark = "0x200/0xff00"

[gateway.masq]
address = "198.18.3.1"
interface = "eth3"
flush_conntrack = "on_up"

[gateway.plain]
address = "198.18.4.1"
interface = "eth4"

[group.wan]
gateways = ["snat", "marked", "masq", "plain"]
`
	p, err := Parse("t.toml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Conntrack{
		"snat":   {Flush: FlushOnDown, SNAT: []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.1.3")}},
		"marked": {Flush: FlushBoth, Mark: 0x200, Mask: 0xff00},
		"masq":   {Flush: FlushOnUp},
		"plain":  {Flush: FlushNever},
	}
	match := map[string]string{"snat": "snat", "marked": "mark", "masq": "interface", "plain": "interface"}
	for name, w := range want {
		c := p.Gateway(name).Conntrack
		if diff := cmp.Diff(w, c, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
		if c.Match() != match[name] {
			t.Errorf("%s: Match() = %q, want %q", name, c.Match(), match[name])
		}
	}
	if !FlushBoth.OnDown() || !FlushBoth.OnUp() || FlushOnUp.OnDown() || FlushOnDown.OnUp() || FlushNever.OnDown() || FlushNever.OnUp() {
		t.Errorf("OnDown/OnUp disagree with the flush_conntrack values")
	}
}
