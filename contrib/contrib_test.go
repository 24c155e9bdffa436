package contrib_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v2"

	"github.com/uplinkd/uplinkd/internal/daemontest"
	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// metricRE matches a metric name wherever it appears: in a PromQL
// expression, a template variable query or an annotation's text.
var metricRE = regexp.MustCompile(`\buplinkd_[a-z0-9_]*[a-z0-9]`)

// designMetrics reads the metric table of docs/design.md: name -> type.
func designMetrics(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatalf("reading the metric contract: %v", err)
	}
	row := regexp.MustCompile("(?m)^\\| `(uplinkd_[a-z0-9_]+)` \\| ([a-z]+)")
	out := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		out[m[1]] = m[2]
	}
	if len(out) < 10 {
		t.Fatalf("docs/design.md: found only %d metric rows; has the table's format changed?", len(out))
	}
	return out
}

// baseName maps a histogram's series names back to the family name.
func baseName(name string, design map[string]string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok && design[b] == "histogram" {
			return b
		}
	}
	return name
}

// jsonStrings returns every string in a decoded JSON document.
func jsonStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			jsonStrings(e, out)
		}
	case map[string]any:
		for _, e := range x {
			jsonStrings(e, out)
		}
	}
}

// referencedMetrics returns, per file, the metric families the dashboard
// and the alert rules name, sorted and unique.
func referencedMetrics(t *testing.T, design map[string]string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	add := func(file, text string) {
		for _, n := range metricRE.FindAllString(text, -1) {
			n = baseName(n, design)
			if !slices.Contains(out[file], n) {
				out[file] = append(out[file], n)
			}
		}
	}
	var dash any
	data, err := os.ReadFile("grafana/uplinkd.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana/uplinkd.json is not JSON: %v", err)
	}
	var strs []string
	jsonStrings(dash, &strs)
	for _, s := range strs {
		add("grafana/uplinkd.json", s)
	}
	for _, f := range []string{"prometheus/alerts.yml", "prometheus/alerts_test.yml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Comments may name metrics too; they must be right as well.
		add(f, string(data))
	}
	for f := range out {
		slices.Sort(out[f])
	}
	return out
}

// TestReferencedMetricsAreInTheContract fails on any metric name in the
// dashboard or the alerts that docs/design.md does not define: a typo there
// is a panel that stays empty or an alert that never fires.
func TestReferencedMetricsAreInTheContract(t *testing.T) {
	design := designMetrics(t)
	refs := referencedMetrics(t, design)
	for _, f := range []string{"grafana/uplinkd.json", "prometheus/alerts.yml"} {
		if len(refs[f]) == 0 {
			t.Errorf("%s names no uplinkd metric at all", f)
		}
	}
	for f, names := range refs {
		for _, n := range names {
			if _, ok := design[n]; !ok {
				t.Errorf("%s: metric %s is not in docs/design.md's metric table", f, n)
			}
		}
	}
}

// TestDashboardCoversTheIssue checks that the dashboard shows what operators
// asked for: each required subject has a panel drawing its metric.
func TestDashboardCoversTheIssue(t *testing.T) {
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("grafana/uplinkd.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	drawn := map[string]string{} // metric -> panel type
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range metricRE.FindAllString(tg.Expr, -1) {
				if _, ok := drawn[n]; !ok || p.Type == "state-timeline" {
					drawn[n] = p.Type
				}
			}
		}
	}
	want := map[string]string{
		"state timeline per gateway": "uplinkd_gateway_state",
		"RTT":                        "uplinkd_gateway_rtt_seconds_bucket",
		"loss":                       "uplinkd_gateway_loss_ratio",
		"probes per second":          "uplinkd_probes_sent_total",
		"transitions and causes":     "uplinkd_gateway_transitions_total",
		"route writes":               "uplinkd_netlink_writes_total",
		"drift repairs":              "uplinkd_drift_repairs_total",
		"hook failures":              "uplinkd_hook_runs_total",
		"reload status":              "uplinkd_config_last_reload_successful",
		"gateways carrying traffic":  "uplinkd_gateway_in_route",
		"active tier per group":      "uplinkd_group_active_tier",
		"gateway table for joins":    "uplinkd_gateway_info",
		"per-target probe results":   "uplinkd_probe_target_success",
		"per-target RTT":             "uplinkd_probe_target_rtt_seconds",
		"link speed":                 "uplinkd_link_speed_bytes",
	}
	for subject, metric := range want {
		if _, ok := drawn[metric]; !ok {
			t.Errorf("dashboard has no panel for %s (no query on %s)", subject, metric)
		}
	}
	if drawn["uplinkd_gateway_state"] != "state-timeline" {
		t.Errorf("gateway state is drawn as %q, want a state-timeline", drawn["uplinkd_gateway_state"])
	}
}

// TestAlertsCoverTheIssue checks that every alert the issue asks for exists
// and is unit-tested in alerts_test.yml.
func TestAlertsCoverTheIssue(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("prometheus/alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1)
	var got []string
	for _, m := range names {
		got = append(got, m[1])
	}
	want := []string{
		"UplinkdGroupDown", "UplinkdGatewayDown", "UplinkdGatewayDegraded", "UplinkdGatewayDamped",
		"UplinkdGatewayFlapping", "UplinkdReloadFailing", "UplinkdHookFailing", "UplinkdDriftRepairs",
		"UplinkdNetlinkWriteErrors", "UplinkdScrapeFailing", "UplinkdAbsent",
		"UplinkdRouteConflict", // issue 19
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
	for _, a := range got {
		if !regexp.MustCompile(`(?m)alertname: ` + a + `\s*$`).Match(tests) {
			t.Errorf("alert %s has no test in alerts_test.yml", a)
		}
	}
}

// TestAlertsHaveRunbooks: every alert has a summary, a description and a
// runbook_url, and the URL's anchor is a heading of docs/operations.md.
func TestAlertsHaveRunbooks(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(ops), -1) {
		// GitHub's anchors: lower case, spaces to dashes, punctuation dropped.
		a := strings.ToLower(strings.TrimSpace(m[1]))
		a = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(a, "")
		anchors[strings.ReplaceAll(a, " ", "-")] = true
	}
	const prefix = "https://github.com/uplinkd/uplinkd/blob/main/docs/operations.md#"
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("alert %s has no %s", r.Alert, k)
				}
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, prefix)
			if !ok {
				t.Errorf("alert %s: runbook_url %q is not in docs/operations.md", r.Alert, u)
				continue
			}
			if !anchors[anchor] {
				t.Errorf("alert %s: docs/operations.md has no heading for #%s", r.Alert, anchor)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d alerts in alerts.yml", n)
	}
}

// TestDashboardQueriesParse feeds every dashboard query, with Grafana's
// variables filled in, to promtool as a recording rule: a PromQL syntax
// error fails here, not on an operator's screen.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed to parse the dashboard's PromQL: install Debian's prometheus package (sh scripts/setup.sh): %v", err)
	}
	var dash any
	data, err := os.ReadFile("grafana/uplinkd.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) < 15 {
		t.Fatalf("found only %d queries in the dashboard", len(exprs))
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$instance", "r1:9474", "$gateway", "isp1")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		e = vars.Replace(e)
		if strings.Contains(e, "$") {
			t.Errorf("query %d uses a variable the dashboard does not define: %s", i, e)
		}
		q, _ := json.Marshal(e) // a JSON string is a valid YAML scalar
		b.WriteString("      - record: dashboard_query_" + strconv.Itoa(i) + "\n        expr: " + string(q) + "\n")
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// TestExamplesAreValid parses every example policy exactly as `uplinkd
// check` does (minus the host's rt_tables: examples use table numbers).
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("examples/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"announce-frr.toml", "dual-stack.toml", "failover-ip-hook.toml", "keepalived.toml", "primary-backup.toml", "realserver-lvs.toml", "router-two-isps.toml"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Parse(f, data, policy.Options{}); err != nil {
			t.Errorf("%v", err)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("examples/%s is missing", w)
		}
	}
}

// TestMetricsExistOnARunningDaemon runs uplinkd in a namespace, makes it
// do everything the dashboard and the alerts watch (transitions, failed
// probes, a hook run, a drift repair, a reload), scrapes /metrics and fails
// on any metric they name that the daemon does not export.
func TestMetricsExistOnARunningDaemon(t *testing.T) {
	design := designMetrics(t)
	refs := referencedMetrics(t, design)
	tu := nstest.NewTwoUplinks(t)
	bin, err := daemontest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, tu.Host, bin, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
weight = 2
[gateway.isp1.probe]
icmp = ["198.18.100.1"]

[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[gateway.isp2.probe]
icmp = ["198.18.100.1"]

[group.wan]
gateways = ["isp1", "isp2"]

[hook.notify]
command = ["/bin/true"]
events = ["gateway_down", "gateway_up"]
`)
	// Traffic through both uplinks, then isp2 dies silently and returns.
	for _, src := range []string{nstest.Host1Addr4.String(), nstest.Host2Addr4.String()} {
		tu.Host.Start(t, "ping", "-n", "-q", "-i", "0.05", "-c", "1200", "-W", "1", "-I", src, nstest.TargetAddr4.String())
	}
	tu.GW2.BlackholeIP(t, nstest.GWDownlinkIf)
	d.WaitFor(15*time.Second, "isp2 down", func() (bool, string) {
		g, err := d.Gateway("isp2")
		if err != nil {
			return false, err.Error()
		}
		return g.State == "down", "isp2 is " + g.State
	})
	tu.GW2.Recover(t)
	d.WaitFor(20*time.Second, "isp2 up again", func() (bool, string) {
		g, err := d.Gateway("isp2")
		if err != nil {
			return false, err.Error()
		}
		return g.State == "up", "isp2 is " + g.State
	})
	// Someone deletes uplinkd's default route: it must be repaired.
	tu.Host.MustRun(t, "ip", "route", "del", "default", "proto", "212")
	daemontest.WaitFor(t, 15*time.Second, "the default route to be repaired", func() (bool, string) {
		out, _ := tu.Host.Run("ip", "route", "show", "default", "proto", "212")
		return strings.Contains(out, "nexthop"), "no default route"
	})
	if out, err := d.Reload(); err != nil {
		t.Fatalf("uplinkd reload: %v\n%s", err, out)
	}

	var fams map[string]string
	daemontest.WaitFor(t, 10*time.Second, "every referenced metric on /metrics", func() (bool, string) {
		m, err := d.Metrics()
		if err != nil {
			return false, err.Error()
		}
		fams = daemontest.Families(m)
		var missing []string
		for _, names := range refs {
			for _, n := range names {
				if _, ok := fams[n]; !ok && !slices.Contains(missing, n) {
					missing = append(missing, n)
				}
			}
		}
		slices.Sort(missing)
		return len(missing) == 0, fmt.Sprintf("missing: %s", strings.Join(missing, ", "))
	})
	// The scrape passes promtool's lint (names, units, help, counters).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed to lint the scrape: install Debian's prometheus package (sh scripts/setup.sh): %v", err)
	}
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(m)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics on a live scrape: %v\n%s", err, out)
	}
	for _, want := range []string{"uplinkd_gateway_info{", "uplinkd_gateway_in_route{", "uplinkd_group_active_tier{", "uplinkd_probe_target_success{"} {
		if !strings.Contains(m, want) {
			t.Errorf("the scrape has no %s...} series", want)
		}
	}
	// And every family has the type the contract gives it.
	for name, typ := range design {
		if got, ok := fams[name]; ok && got != typ {
			t.Errorf("%s is a %s on /metrics, docs/design.md says %s", name, got, typ)
		}
	}
}

// TestRtProtosNamesUplinkdRoutes installs contrib/iproute2's rt_protos
// entry in a private mount namespace (never the host's /etc) and checks
// that iproute2 then shows and selects uplinkd's routes as "proto uplinkd".
func TestRtProtosNamesUplinkdRoutes(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) is needed to try the rt_protos entry without touching /etc: %v", err)
	}
	lab := nstest.New(t)
	h := lab.Host("r")
	h.MustRun(t, "ip", "route", "add", "blackhole", "198.18.100.0/24", "proto", "212")

	// A copy of /etc/iproute2 plus our entry, bind-mounted over /etc/iproute2
	// inside a mount namespace that dies with the shell.
	etc := t.TempDir()
	if out, err := exec.Command("cp", "-a", "/etc/iproute2/.", etc).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc/iproute2: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(etc, "rt_protos.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	entry, err := os.ReadFile("iproute2/rt_protos.d/uplinkd.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "rt_protos.d", "uplinkd.conf"), entry, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `mount --bind "$1" /etc/iproute2 && ip -n "$2" route show table main && echo --- && ip -n "$2" route show proto uplinkd`
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", etc, h.NS).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route with the entry installed: %v\n%s", err, out)
	}
	shown, selected, _ := strings.Cut(string(out), "---")
	if want := "blackhole 198.18.100.0/24 proto uplinkd"; !strings.Contains(shown, want) {
		t.Errorf("with rt_protos.d/uplinkd.conf, ip route shows:\n%s\nwant a line with %q", shown, want)
	}
	if !strings.Contains(selected, "blackhole 198.18.100.0/24") {
		t.Errorf("ip route show proto uplinkd does not select the proto 212 route:\n%s", selected)
	}
}

// unitSettings reads the [Service] settings of the shipped unit.
func unitSettings(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("systemd/uplinkd.service")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "["):
			in = line == "[Service]"
		case in && line != "" && !strings.HasPrefix(line, "#"):
			if k, v, ok := strings.Cut(line, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

// TestUnitLeastPrivilege runs the daemon with the unit's capability
// bounding set and no_new_privs (setpriv stands in for systemd, which is
// not PID 1 here) and checks that it still does its whole job, hooks
// included: the silent death of the primary moves the default route and the
// failover-IP hook moves its address with nothing but CAP_NET_ADMIN and
// CAP_NET_RAW.
func TestUnitLeastPrivilege(t *testing.T) {
	unit := unitSettings(t)
	if unit["NoNewPrivileges"] != "yes" {
		t.Errorf("the unit must set NoNewPrivileges=yes, it has %q", unit["NoNewPrivileges"])
	}
	var caps []string
	for _, c := range strings.Fields(unit["CapabilityBoundingSet"]) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	slices.Sort(caps)
	// BPF and SYS_ADMIN load and adopt the counting programs at start-up;
	// SETPCAP lets the daemon drop them, and itself, from the bounding
	// set (TestRunsUnderUnitBoundingSet).
	if want := []string{"+bpf", "+net_admin", "+net_raw", "+setpcap", "+sys_admin"}; !slices.Equal(caps, want) {
		t.Fatalf("CapabilityBoundingSet gives %v, want exactly %v", caps, want)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to apply the unit's bounding set: %v", err)
	}
	for _, k := range []string{"Type", "WatchdogSec", "ExecReload", "ExecStartPre", "Restart", "ProtectSystem", "ProtectHome", "PrivateTmp", "RuntimeDirectory"} {
		if unit[k] == "" {
			t.Errorf("the unit lacks %s=", k)
		}
	}
	if unit["Type"] != "notify" || unit["ProtectSystem"] != "strict" || !strings.Contains(unit["ExecReload"], "uplinkd reload") {
		t.Errorf("unit: Type=%s ProtectSystem=%s ExecReload=%s", unit["Type"], unit["ProtectSystem"], unit["ExecReload"])
	}

	// Made before the lab, so that it is removed after the lab's cleanup
	// has killed every process in its namespaces: a hook still writing its
	// log would otherwise race the removal ("directory not empty").
	dir := t.TempDir()
	tu := nstest.NewTwoUplinks(t)
	const addr = "198.18.60.1/32"
	tu.Host.AddAddr(t, nstest.HostUplink1If, addr)
	hook := filepath.Join(dir, "move-address")
	script, err := os.ReadFile("examples/hooks/move-address")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, script, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := daemontest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("examples/failover-ip-hook.toml")
	if err != nil {
		t.Fatal(err)
	}
	pol := strings.ReplaceAll(string(text), "/usr/local/lib/uplinkd/hooks/move-address", hook)
	pol = strings.ReplaceAll(pol, "/run/uplinkd/move-address.log", filepath.Join(dir, "moves.log"))

	// ExecStartPre under the same restrictions.
	if out, err := tu.Host.Run(setpriv, "--bounding-set", "-all,"+strings.Join(caps, ","), "--no-new-privs", bin, "check", "-q", "examples/failover-ip-hook.toml"); err != nil {
		t.Fatalf("ExecStartPre (uplinkd check) under the unit's privileges: %v\n%s", err, out)
	}
	d := daemontest.StartWrapped(t, tu.Host, bin, pol, setpriv, "--bounding-set", "-all,"+strings.Join(caps, ","), "--no-new-privs")
	tu.Host.Start(t, "ping", "-n", "-q", "-i", "0.05", "-c", "1200", "-W", "1", nstest.TargetAddr4.String())
	tu.GW1.BlackholeIP(t, nstest.GWDownlinkIf)
	daemontest.WaitFor(t, 15*time.Second, "the default via the backup and the address moved", func() (bool, string) {
		def, _ := tu.Host.Run("ip", "-4", "route", "show", "default", "proto", "212")
		on2, _ := tu.Host.Run("ip", "-4", "-o", "address", "show", "dev", nstest.HostUplink2If)
		ok := strings.Contains(def, "via "+nstest.GW2Addr4.String()) && !strings.Contains(def, nstest.GW1Addr4.String()) && strings.Contains(on2, " "+addr+" ")
		return ok, fmt.Sprintf("default: %s; eth2: %s", strings.TrimSpace(def), strings.TrimSpace(on2))
	})
	if out := d.Output(); strings.Contains(out, "Operation not permitted") {
		t.Errorf("something was refused under the unit's privileges:\n%s", out)
	}
}

// TestUnitReloadReportsRefusal runs the unit's ExecReload= against a
// running daemon, as `systemctl reload` does: it succeeds on a valid
// policy and fails, with the validation error on its output, when the new
// policy is refused, while the daemon keeps running the previous one.
func TestUnitReloadReportsRefusal(t *testing.T) {
	argv := strings.Fields(unitSettings(t)["ExecReload"])
	if len(argv) < 2 || argv[0] != "/usr/local/sbin/uplinkd" || argv[1] != "reload" {
		t.Fatalf("ExecReload=%q: want /usr/local/sbin/uplinkd reload ...", strings.Join(argv, " "))
	}
	tu := nstest.NewTwoUplinks(t)
	bin, err := daemontest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("examples/router-two-isps.toml")
	if err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, tu.Host, bin, string(text))
	argv[0] = bin
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(a, policy.DefaultControlSocket, d.Socket)
	}
	if out, err := tu.Host.Run(argv...); err != nil {
		t.Fatalf("ExecReload with an unchanged policy: %v\n%s", err, out)
	}
	broken := strings.Replace(string(text), "\nweight =", "\nwieght =", 1)
	if broken == string(text) {
		t.Fatal("the example has no weight key to break")
	}
	if err := os.WriteFile(d.Config, []byte(daemontest.SetDaemonKeys(broken, map[string]string{"control_socket": fmt.Sprintf("%q", d.Socket)})), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := tu.Host.Run(argv...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("ExecReload with a refused policy: err %v, want exit status 1 (systemctl reload fails)\n%s", err, out)
	}
	if !strings.Contains(out, "reload refused") || !strings.Contains(out, "wieght") {
		t.Errorf("ExecReload's output does not give the reason:\n%s", out)
	}
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := daemontest.Sum(m, "uplinkd_config_last_reload_successful", nil); err != nil || !ok || v != 0 {
		t.Errorf("uplinkd_config_last_reload_successful = %v (present %v, %v), want 0", v, ok, err)
	}
	if _, err := d.Status(); err != nil {
		t.Errorf("the daemon stopped serving after a refused reload: %v", err)
	}
}

// stopDaemon sends SIGTERM, as systemctl stop does, and waits for a clean
// exit.
func stopDaemon(t *testing.T, d *daemontest.Daemon) {
	t.Helper()
	if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling uplinkd: %v", err)
	}
	if err := d.Host.Wait(d.Cmd, 15*time.Second); err != nil {
		t.Fatalf("uplinkd did not stop cleanly on SIGTERM: %v\n%s", err, d.Output())
	}
}

// TestRestartAndWithdraw proves what docs/operations.md says about
// upgrades: with on_exit = "leave" a stop keeps the routes and the next
// start takes them over without a single netlink write; with
// "withdraw" a stop removes everything uplinkd owns and nothing else.
func TestRestartAndWithdraw(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	bin, err := daemontest.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("examples/router-two-isps.toml")
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's route, in the same table uplinkd manages.
	tu.Host.MustRun(t, "ip", "route", "add", "198.18.200.0/24", "via", nstest.GW1Addr4.String(), "proto", "static")
	owned := func() string {
		out := tu.Host.MustRun(t, "ip", "route", "show", "table", "all", "proto", "212")
		out += tu.Host.MustRun(t, "ip", "-6", "route", "show", "table", "all", "proto", "212")
		// iproute2 6.1 ignores a proto selector on `ip rule show`.
		for _, fam := range []string{"-4", "-6"} {
			for _, l := range strings.Split(tu.Host.MustRun(t, "ip", fam, "rule", "show"), "\n") {
				if strings.Contains(l, "proto 212") {
					out += l + "\n"
				}
			}
		}
		return out
	}

	d := daemontest.Start(t, tu.Host, bin, string(text))
	daemontest.WaitFor(t, 10*time.Second, "the default route", func() (bool, string) {
		o := owned()
		return strings.Count(o, "nexthop via") == 2, o
	})
	before := owned()
	stopDaemon(t, d)
	if after := owned(); after != before {
		t.Fatalf("on_exit = leave: stopping changed uplinkd's routes:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	d = daemontest.Start(t, tu.Host, bin, string(text))
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	writes := 0.0
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "uplinkd_netlink_writes_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				writes += v
			}
		}
	}
	if writes != 0 {
		t.Errorf("a restart over its own routes made %v netlink writes, want 0:\n%s", writes, m)
	}
	if after := owned(); after != before {
		t.Errorf("the restart changed uplinkd's routes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	stopDaemon(t, d)

	// Withdraw, with rules and per-gateway tables too: the realserver.
	stopDaemon(t, daemontest.Start(t, tu.Host, bin, daemontest.SetDaemonKeys(string(text), map[string]string{"on_exit": `"withdraw"`})))
	tu.Host.AddAddr(t, "lo", "198.18.50.1/32")
	tu.Host.AddAddr(t, "lo", "198.18.50.2/32")
	rs, err := os.ReadFile("examples/realserver-lvs.toml")
	if err != nil {
		t.Fatal(err)
	}
	d = daemontest.Start(t, tu.Host, bin, daemontest.SetDaemonKeys(string(rs), map[string]string{"on_exit": `"withdraw"`}))
	daemontest.WaitFor(t, 10*time.Second, "the realserver's rules and tables", func() (bool, string) {
		o := owned()
		return strings.Contains(o, "lookup 201") && strings.Contains(o, "lookup 202") && strings.Contains(o, "table 201"), o
	})
	stopDaemon(t, d)
	if o := strings.TrimSpace(owned()); o != "" {
		t.Errorf("on_exit = withdraw left routes or rules behind:\n%s", o)
	}
	if out := tu.Host.MustRun(t, "ip", "route", "show", "198.18.200.0/24"); !strings.Contains(out, "proto static") {
		t.Errorf("withdrawing removed a route uplinkd does not own; 198.18.200.0/24 is now: %q", out)
	}
}

// TestDashboardLayout catches what Grafana would silently mangle on
// import: duplicate panel ids, panels wider than the 24-column grid or
// overlapping, and queries without the instance selector that lets one
// dashboard serve a fleet.
func TestDashboardLayout(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int                      `json:"id"`
			Type    string                   `json:"type"`
			Title   string                   `json:"title"`
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile("grafana/uplinkd.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" {
		t.Error("the dashboard has no uid: every import would create a copy")
	}
	ids := map[int]string{}
	cells := map[[2]int]string{}
	overlaps := map[string]bool{}
	for _, p := range dash.Panels {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q has gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for y := g.Y; y < g.Y+g.H; y++ {
			for x := g.X; x < g.X+g.W; x++ {
				if other, ok := cells[[2]int{x, y}]; ok && !overlaps[other+"|"+p.Title] {
					overlaps[other+"|"+p.Title] = true
					t.Errorf("panels %q and %q overlap at column %d row %d", other, p.Title, x, y)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query without the instance selector: %s", p.Title, tg.Expr)
			}
		}
	}
}
