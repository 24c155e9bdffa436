package nstest

import (
	"errors"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestCheckLabPrefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"198.18.1.2/24", true},
		{"198.19.255.1/32", true},
		{"2001:db8:1::2/64", true},
		{"2001:db8:100::1/128", true},
		{"198.18.0.0/14", false}, // wider than the lab range
		{"198.20.0.1/24", false},
		{"10.0.0.1/8", false},
		{"192.168.1.1/24", false},
		{"2001:db9::1/64", false},
		{"fe80::1/64", false},
		{"::ffff:198.18.1.1/128", false},
	} {
		err := checkLabPrefix(netip.MustParsePrefix(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("checkLabPrefix(%s) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct {
		key, want string
	}{
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.100/rp_filter", "/proc/sys/net/ipv4/conf/eth0.100/rp_filter"},
		{"kernel.hostname", ""},
		{"vm.swappiness", ""},
		{"net/../kernel/hostname", ""},
		{"net..ipv4", ""},
	} {
		got, err := sysctlPath(tc.key)
		if tc.want == "" {
			if err == nil {
				t.Errorf("sysctlPath(%q) = %q, want refusal", tc.key, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
}

func TestPrefixFormat(t *testing.T) {
	p, err := newPrefix()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^upl[0-9a-f]{6}-[a-z0-9]{1,8}$`).MatchString(p) {
		t.Fatalf("prefix %q has unexpected form", p)
	}
	q, _ := newPrefix()
	if p == q {
		t.Fatalf("two prefixes are equal: %q", p)
	}
}

// pingEventually retries a single-packet ping a bounded number of times;
// the first packet after a neighbour entry went FAILED can legitimately be
// lost while resolution restarts.
func pingEventually(t *testing.T, h *Host, args ...string) {
	t.Helper()
	var err error
	for i := 0; i < 5; i++ {
		if err = h.Ping(t, args...); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("ping never succeeded: %v", err)
}

// routeVia adds per-source policy routing inside the host namespace so that
// traffic sourced from src reaches the target through gw.
func routeVia(t *testing.T, h *Host, table string, src, target, gw netip.Addr, dev string) {
	t.Helper()
	fam := "-4"
	if src.Is6() {
		fam = "-6"
	}
	h.MustRun(t, "ip", fam, "rule", "add", "from", src.String(), "lookup", table, "pref", "1000")
	h.MustRun(t, "ip", fam, "route", "add", target.String(), "via", gw.String(), "dev", dev, "table", table)
}

func TestTwoUplinksReachability(t *testing.T) {
	tu := NewTwoUplinks(t)
	h := tu.Host

	// The host must start without default routes.
	for _, fam := range []string{"-4", "-6"} {
		if out := h.MustRun(t, "ip", fam, "route", "show", "default"); strings.TrimSpace(out) != "" {
			t.Fatalf("host has a default route: %s", out)
		}
	}

	// Path 1 in the main table, path 2 through a per-source table, IPv4 and
	// IPv6: each source address must leave through its own gateway.
	h.MustRun(t, "ip", "route", "add", TargetAddr4.String(), "via", GW1Addr4.String(), "dev", HostUplink1If)
	h.MustRun(t, "ip", "-6", "route", "add", TargetAddr6.String(), "via", GW1Addr6.String(), "dev", HostUplink1If)
	routeVia(t, h, "102", Host2Addr4, TargetAddr4, GW2Addr4, HostUplink2If)
	routeVia(t, h, "102", Host2Addr6, TargetAddr6, GW2Addr6, HostUplink2If)

	for _, tc := range []struct {
		name      string
		src, dst  netip.Addr
		gw        netip.Addr
		dev       string
		gwHost    *Host
		otherHost *Host
	}{
		{"gw1-v4", Host1Addr4, TargetAddr4, GW1Addr4, HostUplink1If, tu.GW1, tu.GW2},
		{"gw2-v4", Host2Addr4, TargetAddr4, GW2Addr4, HostUplink2If, tu.GW2, tu.GW1},
		{"gw1-v6", Host1Addr6, TargetAddr6, GW1Addr6, HostUplink1If, tu.GW1, tu.GW2},
		{"gw2-v6", Host2Addr6, TargetAddr6, GW2Addr6, HostUplink2If, tu.GW2, tu.GW1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.MustRun(t, "ip", "route", "get", tc.dst.String(), "from", tc.src.String())
			if !strings.Contains(out, "via "+tc.gw.String()+" dev "+tc.dev) {
				t.Fatalf("route get %s from %s: %q, want via %s dev %s", tc.dst, tc.src, out, tc.gw, tc.dev)
			}
			pingEventually(t, h, "-I", tc.src.String(), tc.dst.String())
			// Prove the packets really crossed the expected gateway, and
			// that the reply returned through it: blackholing the *other*
			// gateway must not matter, blackholing this one must.
			tc.otherHost.BlackholeIP(t, GWDownlinkIf)
			pingEventually(t, h, "-I", tc.src.String(), tc.dst.String())
			tc.otherHost.Recover(t)
			tc.gwHost.BlackholeIP(t, GWDownlinkIf)
			if err := h.Ping(t, "-I", tc.src.String(), tc.dst.String()); err == nil {
				t.Fatalf("ping from %s succeeded although %s black-holes", tc.src, tc.gwHost.Name)
			}
			tc.gwHost.Recover(t)
			pingEventually(t, h, "-I", tc.src.String(), tc.dst.String())
		})
	}
}

func linkNames(t *testing.T, links []netlink.Link) []string {
	t.Helper()
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	sort.Strings(names)
	return names
}

func TestDoSwitchesAndRestores(t *testing.T) {
	lab := New(t)
	a := lab.Host("a")
	b := lab.Host("b")
	lab.Link(a, "va", b, "vb")

	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()

	var inside []string
	if err := a.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		inside = linkNames(t, links)
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(a.NsHandle()) {
			return errors.New("Do did not switch to the host's namespace")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inside, ","); got != "lo,va" {
		t.Fatalf("links seen inside Do = %s, want lo,va", got)
	}

	// The handle sees the same namespace without switching threads.
	links, err := b.Handle.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(linkNames(t, links), ","); got != "lo,vb" {
		t.Fatalf("links via b.Handle = %s, want lo,vb", got)
	}

	// Errors come back; panics are re-raised in the caller.
	sentinel := errors.New("sentinel")
	if err := a.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do error = %v, want sentinel", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		_ = a.Do(func() error { panic("boom") })
	}()

	// t.SkipNow inside fn ends the (sub)test like it would outside Do.
	reached := false
	t.Run("skip-inside-do", func(t *testing.T) {
		_ = a.Do(func() error { t.Skip("skipped from inside Do"); return nil })
		reached = true
	})
	if reached {
		t.Fatal("code after a Do whose fn called t.Skip was executed")
	}

	// Many Do calls must not leave any thread of this process in the lab:
	// the goroutine running the test must still be in the original netns
	// even when it lands on a thread that served a Do.
	for i := 0; i < 50; i++ {
		if err := a.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(orig) {
		t.Fatal("test goroutine's thread is no longer in the original namespace")
	}
}

func TestSysctlStaysInNamespace(t *testing.T) {
	const key = "/proc/sys/net/ipv4/ip_forward"
	before, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	lab := New(t)
	h := lab.Host("s")
	if got := h.SysctlGet(t, "net.ipv6.conf.all.accept_dad"); got != "0" {
		t.Errorf("accept_dad in lab = %s, want 0", got)
	}
	if got := h.SysctlGet(t, "net.ipv6.conf.default.accept_dad"); got != "0" {
		t.Errorf("default.accept_dad in lab = %s, want 0", got)
	}
	want := "1"
	if strings.TrimSpace(string(before)) == "1" {
		want = "0"
	}
	h.Sysctl(t, "net.ipv4.ip_forward", want)
	if got := h.SysctlGet(t, "net.ipv4.ip_forward"); got != want {
		t.Fatalf("ip_forward in lab = %s, want %s", got, want)
	}
	if out := h.MustRun(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != want {
		t.Fatalf("sysctl via ip netns exec = %q, want %s", out, want)
	}
	after, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("root namespace ip_forward changed from %q to %q", before, after)
	}
	if err := h.sysctl("kernel.hostname", "x"); err == nil {
		t.Fatal("Sysctl accepted a global (non-net) key")
	}
}

func TestAddAddrV6UsableImmediately(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	lab.Link(a, "va", b, "vb")
	a.AddAddr(t, "va", "2001:db8:77::1/64")
	b.AddAddr(t, "vb", "2001:db8:77::2/64")
	if out := a.MustRun(t, "ip", "-6", "addr", "show", "dev", "va"); strings.Contains(out, "tentative") {
		t.Fatalf("address still tentative: %s", out)
	}
	// No sleep: the very first packet must work.
	if err := a.Ping(t, "2001:db8:77::2"); err != nil {
		t.Fatal(err)
	}
}

func TestStartOutputWaitStop(t *testing.T) {
	lab := New(t)
	h := lab.Host("p")

	short := h.Start(t, "sh", "-c", "echo out; echo err >&2")
	if err := h.Wait(short, 10*time.Second); err != nil {
		t.Fatalf("short command: %v", err)
	}
	if got := h.Output(short); !strings.Contains(got, "out") || !strings.Contains(got, "err") {
		t.Fatalf("output = %q, want stdout and stderr", got)
	}

	long := h.Start(t, "sh", "-c", "echo ready; ip -o link show lo; exec sleep 600")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.Output(long), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("process never became ready; output %q", h.Output(long))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ns, err := os.Readlink("/proc/" + itoa(long.Process.Pid) + "/ns/net"); err != nil {
		t.Fatal(err)
	} else if self, _ := os.Readlink("/proc/self/ns/net"); ns == self {
		t.Fatal("started process runs in the root namespace")
	}
	h.Stop(long)
	if err := h.Wait(long, 5*time.Second); err == nil {
		t.Fatal("killed process reported success")
	}
}
