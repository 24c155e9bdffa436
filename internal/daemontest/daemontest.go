package daemontest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// Build compiles cmd/uplinkd into dir and returns the binary's path. The
// module root is found from this source file, so tests in any directory can
// call it. It builds what `make build` ships: CGO_ENABLED=0, which the
// capability drop needs.
func Build(dir string) (string, error) {
	return build(filepath.Join(dir, "uplinkd"), "CGO_ENABLED=0")
}

// BuildRace compiles cmd/uplinkd with the race detector into dir, for the
// suites that run the real daemon (e2e, reliability): a data race in the
// daemon then stops it (GORACE halt_on_error, see RaceEnv) and fails the
// test. The race detector needs cgo, which makes dropping capabilities on
// every thread impossible, so this build (tag uplinkd_racetest) keeps
// them and says so; tests of the capability drop use Build.
func BuildRace(dir string) (string, error) {
	return build(filepath.Join(dir, "uplinkd-race"), "CGO_ENABLED=1", "-race", "-tags", "uplinkd_racetest")
}

// RaceEnv is the GORACE setting the suites export for a BuildRace binary:
// the first race report ends the daemon with exit status 66. The race
// runtime otherwise sleeps a second at every exit (atexit_sleep_ms), and
// every hook run re-executes the daemon binary as its reaper, so each hook
// would take a second.
const RaceEnv = "halt_on_error=1 exitcode=66 atexit_sleep_ms=0"

func build(bin, cgo string, flags ...string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = "/usr/local/go/bin/go" // where the machine image and CI keep it
	}
	args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/uplinkd")
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), cgo)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building uplinkd (%s %s): %v\n%s", cgo, strings.Join(flags, " "), err, out)
	}
	return bin, nil
}

// Root returns the module's root directory, or "" if it cannot be found.
func Root() string {
	r, _ := moduleRoot()
	return r
}

// moduleRoot walks up from this source file to the directory holding
// go.mod, so the package keeps working wherever it is moved.
func moduleRoot() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating the module root: no caller information")
	}
	for dir := filepath.Dir(self); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", fmt.Errorf("locating the module root: no go.mod above %s", self)
		}
	}
}

// SetDaemonKeys returns policy text with the given [daemon] keys set: an
// existing [daemon] table gets them (replacing keys of the same name), a
// policy without one gets a new table at the top. Values are TOML literals.
func SetDaemonKeys(text string, kv map[string]string) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var add strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&add, "%s = %s\n", k, kv[k])
	}
	lines := strings.SplitAfter(text, "\n")
	var out strings.Builder
	in := false
	found := false
	for _, l := range lines {
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "[") {
			in = trim == "[daemon]"
			out.WriteString(l)
			if in {
				found = true
				out.WriteString(add.String())
			}
			continue
		}
		if in {
			if k, _, ok := strings.Cut(trim, "="); ok && kv[strings.TrimSpace(k)] != "" {
				continue // replaced above
			}
		}
		out.WriteString(l)
	}
	if !found {
		return "[daemon]\n" + add.String() + "\n" + text
	}
	return out.String()
}

// Daemon is a running `uplinkd run` in a namespace.
type Daemon struct {
	Host   *nstest.Host
	Bin    string
	Dir    string // the test's directory: policy, control socket, track files
	Config string // the policy file
	Socket string // the control socket
	Listen string
	Cmd    *exec.Cmd
	t      testing.TB
}

// Start writes policyText (with control_socket moved into a temporary
// directory) and runs the daemon in h until t ends. It waits until the
// daemon answers on its HTTP listener and has left "unknown" for every
// gateway, and fails the test, with the daemon's output, otherwise.
func Start(t testing.TB, h *nstest.Host, bin, policyText string) *Daemon {
	t.Helper()
	return StartWrapped(t, h, bin, policyText)
}

// StartWrapped is Start with wrap prepended to the daemon's argv, for a
// tool that changes how it runs (setpriv with a unit's capability bounding
// set, for instance). wrap runs inside the namespace.
func StartWrapped(t testing.TB, h *nstest.Host, bin, policyText string, wrap ...string) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d := &Daemon{Host: h, Bin: bin, Dir: dir, Config: filepath.Join(dir, "uplinkd.toml"), Socket: filepath.Join(dir, "control.sock"), t: t}
	text := SetDaemonKeys(policyText, map[string]string{"control_socket": fmt.Sprintf("%q", d.Socket)})
	if err := os.WriteFile(d.Config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(d.Config, []byte(text), policy.Options{})
	if err != nil {
		t.Fatalf("the test's policy is invalid: %v\n%s", err, text)
	}
	d.Listen = p.Daemon.Listen
	argv := append(append([]string{}, wrap...), bin, "run", "--config", d.Config, "--log-level", "debug")
	d.Cmd = h.Start(t, argv...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("uplinkd output in %s:\n%s", h.NS, tail(h.Output(d.Cmd), 16384))
		}
	})
	d.WaitFor(20*time.Second, "uplinkd to judge every gateway", func() (bool, string) {
		st, err := d.Status()
		if err != nil {
			return false, err.Error()
		}
		for _, g := range st.Gateways {
			if g.State == "unknown" {
				return false, fmt.Sprintf("gateway %s still unknown", g.Name)
			}
		}
		return true, ""
	})
	return d
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// Status is the part of `uplinkd status --json` the tests read. It is
// decoded from the JSON, as a script would, rather than shared with
// internal/daemon, so that a renamed field fails here.
type Status struct {
	Gateways []Gateway `json:"gateways"`
	Groups   []Group   `json:"groups"`
	Routes   []string  `json:"routes"`
	Rules    []string  `json:"rules"`
}

// Gateway is one gateway in Status.
type Gateway struct {
	Name    string  `json:"name"`
	State   string  `json:"state"`
	Up      bool    `json:"up"`
	Carrier bool    `json:"carrier"`
	Standby bool    `json:"standby"`
	Damped  bool    `json:"damped"`
	Reason  string  `json:"reason"`
	Penalty float64 `json:"flap_penalty"`
}

// Group is one group in Status.
type Group struct {
	Name    string `json:"name"`
	Up      bool   `json:"up"`
	Healthy int    `json:"healthy"`
}

// Output is what the daemon wrote so far.
func (d *Daemon) Output() string { return d.Host.Output(d.Cmd) }

// Status runs `uplinkd status --json` in the daemon's namespace.
func (d *Daemon) Status() (*Status, error) {
	out, err := d.Host.Run(d.Bin, "status", "--json", "--addr", d.Listen, "--timeout", "2s")
	if err != nil {
		return nil, fmt.Errorf("uplinkd status: %v: %s", err, strings.TrimSpace(out))
	}
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("decoding uplinkd status: %v", err)
	}
	return &st, nil
}

// Gateway returns one gateway's status.
func (d *Daemon) Gateway(name string) (Gateway, error) {
	st, err := d.Status()
	if err != nil {
		return Gateway{}, err
	}
	for _, g := range st.Gateways {
		if g.Name == name {
			return g, nil
		}
	}
	return Gateway{}, fmt.Errorf("no gateway %q in status", name)
}

// Check runs `uplinkd status --check NAME` and returns its exit status.
func (d *Daemon) Check(name string) int {
	out, err := d.Host.Run(d.Bin, "status", "--check", name, "--addr", d.Listen, "--timeout", "2s")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	d.t.Fatalf("uplinkd status --check %s: %v: %s", name, err, out)
	return -1
}

// Reload runs `uplinkd reload` against the daemon's control socket.
func (d *Daemon) Reload() (string, error) {
	return d.Host.Run(d.Bin, "reload", "--socket", d.Socket)
}

// Metrics fetches /metrics over a socket opened inside the namespace.
func (d *Daemon) Metrics() (string, error) {
	var body []byte
	err := d.Host.Do(func() error {
		// The socket is created on this thread, which is inside the
		// namespace; http.Client would dial from another goroutine.
		c, err := net.DialTimeout("tcp", d.Listen, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+d.Listen+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return string(body), err
}

var familyRE = regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)

// Families returns the metric families /metrics exposes, name -> type.
func Families(metrics string) map[string]string {
	out := map[string]string{}
	for _, m := range familyRE.FindAllStringSubmatch(metrics, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// WaitFor polls cond every 50 ms until it holds or timeout passes, then
// fails the test with the last thing cond said. It asserts an outcome, not
// a duration: timeouts are generous.
func (d *Daemon) WaitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	d.t.Helper()
	WaitFor(d.t, timeout, what, cond)
}

// WaitFor polls cond every 50 ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Sum parses Prometheus text exposition and sums the samples of the family
// name whose labels include every pair in want (counters, gauges and
// untyped). present is false when the family is absent, which tests of
// "never happened" counters must tell apart from a zero.
func Sum(metrics, name string, want map[string]string) (sum float64, present bool, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		return 0, false, fmt.Errorf("parsing /metrics: %w", err)
	}
	mf := mfs[name]
	if mf == nil {
		return 0, false, nil
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum, true, nil
}
