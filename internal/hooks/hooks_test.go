package hooks

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/policy"
)

// collector gathers results in the order the runner reports them.
type collector struct {
	mu  sync.Mutex
	res []Result
}

func (c *collector) add(r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res = append(c.res, r)
}

func (c *collector) get() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Result(nil), c.res...)
}

// waitFor polls cond every 20 ms up to a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newRunner(t *testing.T, cfg Config, hs ...*policy.Hook) (*Runner, *collector, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(reg)
	}
	r := New(cfg)
	c := &collector{}
	r.OnResult(c.add)
	r.SetHooks(hs)
	t.Cleanup(func() { r.Close() })
	return r, c, reg
}

func TestMatches(t *testing.T) {
	h := &policy.Hook{Events: []string{policy.EventGatewayDown, policy.EventGroupDown}, Objects: []string{"isp1", "wan"}}
	all := &policy.Hook{Events: []string{policy.EventGatewayDown}}
	cond := &policy.Hook{Events: []string{policy.EventConditionUp}, Objects: []string{"claim"}}
	for _, tc := range []struct {
		name string
		h    *policy.Hook
		e    Event
		want bool
	}{
		{"event and gateway", h, Event{Name: policy.EventGatewayDown, Gateway: "isp1"}, true},
		{"other gateway", h, Event{Name: policy.EventGatewayDown, Gateway: "isp2"}, false},
		{"group listed", h, Event{Name: policy.EventGroupDown, Group: "wan"}, true},
		{"gateway in listed group", h, Event{Name: policy.EventGatewayDown, Gateway: "isp2", Group: "wan"}, true},
		{"event not subscribed", h, Event{Name: policy.EventGatewayUp, Gateway: "isp1"}, false},
		{"no filter", all, Event{Name: policy.EventGatewayDown, Gateway: "x"}, true},
		{"filter, no object", h, Event{Name: policy.EventGatewayDown}, false},
		{"condition listed", cond, Event{Name: policy.EventConditionUp, Condition: "claim"}, true},
		{"other condition", cond, Event{Name: policy.EventConditionUp, Condition: "other"}, false},
	} {
		if got := Matches(tc.h, tc.e); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEnvIsCleanAndComplete(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	sh := script(t, "env > "+out+"\n")
	h := &policy.Hook{Name: "env", Command: []string{sh}, Timeout: 5 * time.Second, Events: []string{policy.EventGatewayDown}}
	t.Setenv("UPLINKD_SECRET_FROM_PARENT", "leak")
	r, c, _ := newRunner(t, Config{}, h)
	r.Fire(Event{Name: policy.EventGatewayDown, Gateway: "isp1", Group: "wan", Interface: "eth1",
		Address: "198.18.1.1", PrevState: "up", State: "down", Reason: "3 probes lost\nafter $(reboot)", Table: "254"})
	waitFor(t, "one run", func() bool { return len(c.get()) == 1 })
	if res := c.get()[0]; res.Result != ResultOK {
		t.Fatalf("result %+v", res)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	// sh itself adds PWD, SHLVL and "_"; everything else must be ours.
	for _, k := range []string{"PWD", "SHLVL", "_", "OLDPWD"} {
		delete(got, k)
	}
	want := map[string]string{
		"PATH":               "/usr/sbin:/usr/bin:/sbin:/bin",
		"UPLINKD_EVENT":      "gateway_down",
		"UPLINKD_GATEWAY":    "isp1",
		"UPLINKD_GROUP":      "wan",
		"UPLINKD_INTERFACE":  "eth1",
		"UPLINKD_ADDRESS":    "198.18.1.1",
		"UPLINKD_PREV_STATE": "up",
		"UPLINKD_STATE":      "down",
		"UPLINKD_REASON":     "3 probes lost after $(reboot)",
		"UPLINKD_TABLE":      "254",
		"UPLINKD_CHANGES":    "",
		"UPLINKD_CONDITION":  "",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("hook environment (-want +got):\n%s", d)
	}
}

func TestSerializedInEventOrder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "order")
	// The sleep makes later events pile up in the queue while the first runs.
	sh := script(t, "sleep 0.05\necho \"$UPLINKD_STATE\" >> "+out+"\n")
	h := &policy.Hook{Name: "order", Command: []string{sh}, Timeout: 5 * time.Second, Events: []string{policy.EventGatewayUp}}
	r, c, _ := newRunner(t, Config{}, h)
	var want []string
	for i := range 20 {
		s := strconv.Itoa(i)
		want = append(want, s)
		r.Fire(Event{Name: policy.EventGatewayUp, State: s})
	}
	waitFor(t, "20 runs", func() bool { return len(c.get()) == 20 })
	data, _ := os.ReadFile(out)
	if d := cmp.Diff(want, strings.Fields(string(data))); d != "" {
		t.Errorf("run order (-want +got):\n%s", d)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The hook spawns a child that would outlive it, then hangs.
	sh := script(t, "sleep 300 &\necho $! > "+pidFile+"\nsleep 300\n")
	h := &policy.Hook{Name: "hang", Command: []string{sh}, Timeout: 200 * time.Millisecond, Events: []string{policy.EventGatewayDown}}
	r, c, reg := newRunner(t, Config{}, h)
	r.Fire(Event{Name: policy.EventGatewayDown})
	waitFor(t, "the run to end", func() bool { return len(c.get()) == 1 })
	res := c.get()[0]
	if res.Result != ResultTimeout {
		t.Fatalf("result = %q (%v), want timeout", res.Result, res.Err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	waitFor(t, "the hook's child to die", func() bool {
		// A zombie child has been killed; it just waits for init to reap it.
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	if err := syscall.Kill(pid, 0); err == nil {
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if !strings.Contains(string(st), ") Z ") {
			t.Errorf("child %d still running", pid)
		}
	}
	if got := testutil.ToFloat64(r.cfg.Metrics.runs.WithLabelValues("hang", ResultTimeout)); got != 1 {
		t.Errorf("hook_runs_total{result=timeout} = %v, want 1", got)
	}
	_ = reg
}

func TestResults(t *testing.T) {
	ok := &policy.Hook{Name: "ok", Command: []string{"/bin/true"}, Timeout: 5 * time.Second, Events: []string{policy.EventGroupUp}}
	fail := &policy.Hook{Name: "fail", Command: []string{script(t, "echo boom >&2\nexit 3\n")}, Timeout: 5 * time.Second, Events: []string{policy.EventGroupUp}}
	missing := &policy.Hook{Name: "missing", Command: []string{"/nonexistent/uplinkd-hook"}, Timeout: 5 * time.Second, Events: []string{policy.EventGroupUp}}
	r, c, _ := newRunner(t, Config{}, ok, fail, missing)
	r.Fire(Event{Name: policy.EventGroupUp, Group: "wan"})
	waitFor(t, "three runs", func() bool { return len(c.get()) == 3 })
	got := map[string][2]string{}
	codes := map[string]int{}
	for _, res := range c.get() {
		got[res.Hook] = [2]string{res.Result, strings.TrimSpace(res.Output)}
		codes[res.Hook] = res.ExitCode
	}
	want := map[string][2]string{"ok": {ResultOK, ""}, "fail": {ResultFailed, "boom"}, "missing": {ResultError, ""}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]int{"ok": 0, "fail": 3, "missing": -1}, codes); d != "" {
		t.Errorf("exit codes (-want +got):\n%s", d)
	}
	for hook, result := range map[string]string{"ok": ResultOK, "fail": ResultFailed, "missing": ResultError} {
		if v := testutil.ToFloat64(r.cfg.Metrics.runs.WithLabelValues(hook, result)); v != 1 {
			t.Errorf("hook_runs_total{hook=%s,result=%s} = %v, want 1", hook, result, v)
		}
	}
}

func TestOutputIsBounded(t *testing.T) {
	// 1 MiB of output; only 1 KiB is kept.
	sh := script(t, "head -c 1048576 /dev/zero | tr '\\0' x\n")
	h := &policy.Hook{Name: "chatty", Command: []string{sh}, Timeout: 10 * time.Second, Events: []string{policy.EventGatewayUp}}
	r, c, _ := newRunner(t, Config{MaxOutput: 1024}, h)
	r.Fire(Event{Name: policy.EventGatewayUp})
	waitFor(t, "the run", func() bool { return len(c.get()) == 1 })
	res := c.get()[0]
	if res.Result != ResultOK {
		t.Fatalf("result %q: %v", res.Result, res.Err)
	}
	wantPrefix := strings.Repeat("x", 1024)
	wantNote := "\n[output truncated: " + strconv.Itoa(1<<20-1024) + " more bytes]"
	if res.Output != wantPrefix+wantNote {
		t.Errorf("output is %d bytes ending %q; want 1024 x's and the note %q", len(res.Output), res.Output[max(0, len(res.Output)-60):], wantNote)
	}
}

func TestFireNeverBlocks(t *testing.T) {
	release := filepath.Join(t.TempDir(), "release")
	// The hook blocks until the test creates the release file (bounded by its
	// timeout), so the queue fills up behind it.
	sh := script(t, "i=0; while [ ! -e "+release+" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n")
	h := &policy.Hook{Name: "slow", Command: []string{sh}, Timeout: 20 * time.Second, Events: []string{policy.EventGatewayDown}}
	r, c, _ := newRunner(t, Config{QueueLen: 4}, h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			r.Fire(Event{Name: policy.EventGatewayDown})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Fire blocked")
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, res := range c.get() {
		counts[res.Result]++
	}
	// One run may have been dequeued before the rest arrived, so 4 or 5 ran;
	// every other event was dropped and counted, none lost silently.
	if counts[ResultOK]+counts[ResultDropped] != 100 || counts[ResultOK] < 4 || counts[ResultOK] > 5 {
		t.Errorf("results %v; want 4 or 5 ok and the rest of 100 dropped", counts)
	}
	if v := testutil.ToFloat64(r.cfg.Metrics.runs.WithLabelValues("slow", ResultDropped)); int(v) != counts[ResultDropped] {
		t.Errorf("dropped counter %v, want %d", v, counts[ResultDropped])
	}
}

func TestSetHooksRemovesSeries(t *testing.T) {
	a := &policy.Hook{Name: "a", Command: []string{"/bin/true"}, Timeout: time.Second, Events: []string{policy.EventGatewayUp}}
	b := &policy.Hook{Name: "b", Command: []string{"/bin/true"}, Timeout: time.Second, Events: []string{policy.EventGatewayUp}}
	r, _, reg := newRunner(t, Config{}, a, b)
	if n := testutil.CollectAndCount(r.cfg.Metrics.runs); n != 10 {
		t.Fatalf("%d series for two hooks, want 10", n)
	}
	r.SetHooks([]*policy.Hook{a})
	if n := testutil.CollectAndCount(r.cfg.Metrics.runs); n != 5 {
		t.Errorf("%d series after removing hook b, want 5", n)
	}
	_ = reg
}

func TestLimitedBuffer(t *testing.T) {
	for _, tc := range []struct {
		writes []string
		max    int
		want   string
	}{
		{[]string{"ab", "cd"}, 10, "abcd"},
		{[]string{"abcdef"}, 4, "abcd\n[output truncated: 2 more bytes]"},
		{[]string{"ab", "cdef", "gh"}, 4, "abcd\n[output truncated: 4 more bytes]"},
		{[]string{"abcd", "e"}, 4, "abcd\n[output truncated: 1 more bytes]"},
	} {
		b := &limitedBuffer{max: tc.max}
		for _, w := range tc.writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if got := b.String(); got != tc.want {
			t.Errorf("writes %q max %d: got %q want %q", tc.writes, tc.max, got, tc.want)
		}
	}
}

func TestCloseKillsRunning(t *testing.T) {
	sh := script(t, "sleep 300\n")
	h := &policy.Hook{Name: "long", Command: []string{sh}, Timeout: 5 * time.Minute, Events: []string{policy.EventGatewayUp}}
	r, c, _ := newRunner(t, Config{}, h)
	r.Fire(Event{Name: policy.EventGatewayUp})
	time.Sleep(100 * time.Millisecond) // let it start; Close must work either way
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return")
	}
	r.Close() // idempotent
	r.Fire(Event{Name: policy.EventGatewayUp})
	if n := len(c.get()); n > 1 {
		t.Errorf("%d results after Close, want at most 1", n)
	}
}

func TestPausedRunsNothingUntilStart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ran")
	sh := script(t, "echo \"$UPLINKD_STATE\" >> "+out+"\n")
	h := &policy.Hook{Name: "p", Command: []string{sh}, Timeout: 5 * time.Second, Events: []string{policy.EventGatewayUp}}
	r, c, _ := newRunner(t, Config{Paused: true}, h)
	r.Fire(Event{Name: policy.EventGatewayUp, State: "1"})
	r.Fire(Event{Name: policy.EventGatewayUp, State: "2"})
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(out); !os.IsNotExist(err) || len(c.get()) != 0 {
		t.Fatalf("a paused runner ran a hook (%v, %d results)", err, len(c.get()))
	}
	r.Start()
	r.Start() // idempotent
	waitFor(t, "both queued runs", func() bool { return len(c.get()) == 2 })
	data, _ := os.ReadFile(out)
	if string(data) != "1\n2\n" {
		t.Errorf("runs after Start: %q, want both in order", data)
	}
}

func TestLogTail(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"short", "all of it\n", 64, "all of it\n"},
		{"cut at a line", "aaaa\nbbbb\ncccc\n", 8, "[10 earlier bytes at debug level]\ncccc\n"},
		{"no line near", strings.Repeat("x", 600), 10, "[590 earlier bytes at debug level]\nxxxxxxxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := logTail(tt.in, tt.max); got != tt.want {
				t.Errorf("logTail = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRunLeavesNothingBehind is issue 11 item 7: a hook that exits 0 after
// starting a background child, a child that holds the output pipe, a
// setsid'd child and a double-forked grandchild leaves none of them
// running once its run is reported. The old runner killed the process
// group only at a timeout, so every one of these survived as root.
func TestRunLeavesNothingBehind(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	sh := script(t, `
sleep 300 </dev/null >/dev/null 2>&1 &
echo $! >> `+pids+`
sleep 300 &
echo $! >> `+pids+`
setsid sleep 300 </dev/null >/dev/null 2>&1 &
echo $! >> `+pids+`
sh -c 'sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> `+pids+`' &
wait $!
echo started
exit 0
`)
	h := &policy.Hook{Name: "escape", Command: []string{sh}, Timeout: 30 * time.Second, Events: []string{policy.EventGatewayDown}}
	r, c, _ := newRunner(t, Config{}, h)
	r.Fire(Event{Name: policy.EventGatewayDown})
	waitFor(t, "the run to end", func() bool { return len(c.get()) == 1 })
	res := c.get()[0]
	if res.Result != ResultOK || strings.TrimSpace(res.Output) != "started" {
		t.Fatalf("result %q output %q err %v, want ok and \"started\"", res.Result, res.Output, res.Err)
	}
	if res.Duration > 5*time.Second {
		t.Errorf("run took %s: the pipe holder kept it waiting", res.Duration)
	}
	data, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 4 {
		t.Fatalf("hook recorded %d pids, want 4: %q", len(fields), data)
	}
	for _, f := range fields {
		pid, _ := strconv.Atoi(f)
		// Reaped as well as killed: not even a zombie may be left.
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			st, _ := os.ReadFile("/proc/" + f + "/stat")
			t.Errorf("hook descendant %d survived the run (kill 0: %v): %s", pid, err, st)
			syscall.Kill(pid, syscall.SIGKILL) // ours: the test started it
		}
	}
}

// TestRunRefusesUntrustedSymlink: the hook is executed through the
// descriptor securefile checked, so a symlink in a directory that someone
// other than root owns is refused rather than followed.
func TestRunRefusesUntrustedSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a directory to nobody (uid 65534)")
	}
	target := script(t, "echo ran\n")
	dir := filepath.Join(t.TempDir(), "nobody")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "hook")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	h := &policy.Hook{Name: "link", Command: []string{link}, Timeout: 5 * time.Second, Events: []string{policy.EventGatewayDown}}
	r, c, _ := newRunner(t, Config{}, h)
	r.Fire(Event{Name: policy.EventGatewayDown})
	waitFor(t, "the run to end", func() bool { return len(c.get()) == 1 })
	res := c.get()[0]
	if res.Result != ResultError || res.Err == nil || !strings.Contains(res.Err.Error(), "its directory "+dir+" is owned by uid 65534, not root") {
		t.Fatalf("result %q err %v output %q, want an error naming the directory", res.Result, res.Err, res.Output)
	}
	// The same link in a root-owned directory runs.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	r.Fire(Event{Name: policy.EventGatewayDown})
	waitFor(t, "the second run", func() bool { return len(c.get()) == 2 })
	if res := c.get()[1]; res.Result != ResultOK || strings.TrimSpace(res.Output) != "ran" {
		t.Fatalf("trusted link: result %q output %q err %v", res.Result, res.Output, res.Err)
	}
}

// TestDaemonDeathEndsRun: when the daemon itself dies (SIGKILL, so no
// Close), the reaper sees its lifeline close and kills the run. The
// "daemon" is this test binary re-executed in helperDaemon mode.
func TestDaemonDeathEndsRun(t *testing.T) {
	if os.Getenv("UPLINKD_TEST_HELPER_DAEMON") != "" {
		t.Skip("inside the helper")
	}
	pids := filepath.Join(t.TempDir(), "pids")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDaemon$", "-test.count=1")
	cmd.Env = append(os.Environ(), "UPLINKD_TEST_HELPER_DAEMON="+pids)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "the helper's hook to start", func() bool {
		b, _ := os.ReadFile(pids)
		return len(strings.Fields(string(b))) == 2
	})
	cmd.Process.Kill() // ours, by PID
	cmd.Wait()
	b, _ := os.ReadFile(pids)
	for _, f := range strings.Fields(string(b)) {
		waitFor(t, "hook process "+f+" to be gone", func() bool {
			// Orphaned zombies are reaped by init, not by us: a zombie
			// is dead enough.
			st, err := os.ReadFile("/proc/" + f + "/stat")
			return err != nil || strings.Contains(string(st), ") Z ")
		})
	}
}

// TestHelperDaemon is the helper for TestDaemonDeathEndsRun: a runner
// with one hook that records its pid and its child's, then hangs.
func TestHelperDaemon(t *testing.T) {
	pids := os.Getenv("UPLINKD_TEST_HELPER_DAEMON")
	if pids == "" {
		t.Skip("helper for TestDaemonDeathEndsRun")
	}
	// In the parent's directory: this process is killed, so its own
	// t.TempDir would never be removed.
	sh := filepath.Join(filepath.Dir(pids), "hang.sh")
	if err := os.WriteFile(sh, []byte("#!/bin/sh\nsleep 300 &\necho $! >> "+pids+"\necho $$ >> "+pids+"\nsleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &policy.Hook{Name: "hang", Command: []string{sh}, Timeout: time.Minute, Events: []string{policy.EventGatewayDown}}
	r := New(Config{})
	r.SetHooks([]*policy.Hook{h})
	r.Fire(Event{Name: policy.EventGatewayDown})
	time.Sleep(time.Minute) // killed by the parent test long before
}
