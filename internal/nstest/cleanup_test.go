package nstest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsList returns the names `ip netns list` prints.
func netnsList(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m
}

// procInNS reports whether pid is alive (not a zombie) and in netns ns.
// Comparing the namespace, not just existence, makes a recycled PID harmless.
func procInNS(pid int, nsInode string) bool {
	if nsInode == "" {
		return false
	}
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return false
	}
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if i := strings.LastIndexByte(string(st), ')'); i >= 0 && len(st) > i+2 && st[i+2] == 'Z' {
		return false
	}
	return link == nsInode
}

func waitGone(pid int, nsInode string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for procInNS(pid, nsInode) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func nsInodeOf(t *testing.T, pid int) string {
	t.Helper()
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return link
}

func TestCloseRemovesEverything(t *testing.T) {
	lab := New(t)
	a := lab.Host("a")
	b := lab.Host("b")
	lab.Link(a, "va", b, "vb")
	a.AddAddr(t, "va", "198.18.200.1/24")
	b.AddAddr(t, "vb", "198.18.200.2/24")
	b.BlackholeIP(t, "vb")

	started := a.Start(t, "sleep", "600")
	inode := nsInodeOf(t, started.Process.Pid)

	// A process that escapes its process group, like a daemon spawned by
	// code under test: Close must still find and kill it, or the namespace
	// would live on invisibly.
	// `setsid -f` returns right after fork, before the child has left the shell's
	// process group: wait (bounded) until it has, or the harness's group kill of
	// the finished shell would take the child with it and there would be
	// nothing left to escape.
	b.MustRun(t, "sh", "-c", "setsid -f sleep 600 </dev/null >/dev/null 2>&1; "+
		"i=0; while [ $i -lt 200 ] && pgrep -g 0 -x 'setsid|sleep' >/dev/null; do i=$((i+1)); sleep 0.01; done")
	out, err := exec.Command("ip", "netns", "pids", b.NS).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns pids: %v: %s", err, out)
	}
	var escaped []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			escaped = append(escaped, pid)
		}
	}
	if len(escaped) == 0 {
		t.Fatal("escaped process not found in namespace")
	}
	escInode := nsInodeOf(t, escaped[0])

	names := lab.Namespaces()
	before := netnsList(t)
	for _, n := range names {
		if !before[n] {
			t.Fatalf("namespace %s missing from ip netns list before Close", n)
		}
	}

	lab.Close()
	lab.Close() // idempotent

	after := netnsList(t)
	for _, n := range names {
		if after[n] {
			t.Errorf("namespace %s still listed after Close", n)
		}
	}
	if err := syscall.Kill(started.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) && procInNS(started.Process.Pid, inode) {
		t.Errorf("started process %d still alive after Close", started.Process.Pid)
	}
	for _, pid := range escaped {
		if !waitGone(pid, escInode, 5*time.Second) {
			t.Errorf("escaped process %d still alive after Close", pid)
		}
	}
}

// The crash helpers run in a child test binary (see TestCleanupOnCrash): a
// failing or panicking test cannot be observed from inside the same test
// without failing it.
const crashEnv = "NSTEST_CRASH_HELPER"

func TestCrashHelper(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("only run as a child of TestCleanupOnCrash")
	}
	report := func(format string, args ...any) { fmt.Printf("NSTEST "+format+"\n", args...) }
	var names []string
	var pid int
	var inode string

	body := func(t *testing.T) {
		// Registered before New, so it runs after the lab's cleanup (LIFO)
		// and can observe the result even when the test panics.
		t.Cleanup(func() {
			gone := !procInNS(pid, inode)
			report("after-cleanup pid-gone=%v", gone)
		})
		tu := NewTwoUplinks(t)
		names = tu.Lab.Namespaces()
		for _, n := range names {
			report("ns %s", n)
		}
		cmd := tu.Server.Start(t, "sleep", "600")
		pid = cmd.Process.Pid
		inode = nsInodeOf(t, pid)
		report("pid %d", pid)
		switch mode {
		case "fatal":
			t.Fatal("deliberate failure")
		case "panic":
			panic("deliberate panic")
		}
	}
	switch mode {
	case "fatal":
		t.Run("sub", body)
		// Checked here, in-process, before the binary exits: cleanup must
		// happen when the subtest ends, not merely when the process dies.
		list, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, n := range names {
			if strings.Contains(string(list), n) {
				left++
			}
		}
		report("after-subtest ns-left=%d pid-gone=%v", left, !procInNS(pid, inode))
	case "panic":
		body(t)
	}
}

func TestCleanupOnCrash(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, mode := range []string{"fatal", "panic"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1", "-test.v", "-test.timeout=120s")
			cmd.Env = append(os.Environ(), crashEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("helper unexpectedly passed:\n%s", out)
			}
			var names []string
			var pids []int
			lines := map[string]bool{}
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) < 2 || f[0] != "NSTEST" {
					continue
				}
				switch f[1] {
				case "ns":
					names = append(names, f[2])
				case "pid":
					p, _ := strconv.Atoi(f[2])
					pids = append(pids, p)
				default:
					lines[strings.Join(f[1:], " ")] = true
				}
			}
			if len(names) != 4 || len(pids) != 1 {
				t.Fatalf("helper did not report its lab (names=%v pids=%v):\n%s", names, pids, out)
			}
			if mode == "panic" && !strings.Contains(string(out), "deliberate panic") {
				t.Fatalf("helper did not panic as intended:\n%s", out)
			}
			if !lines["after-cleanup pid-gone=true"] {
				t.Errorf("started process survived the lab cleanup:\n%s", out)
			}
			if mode == "fatal" && !lines["after-subtest ns-left=0 pid-gone=true"] {
				t.Errorf("subtest cleanup incomplete:\n%s", out)
			}
			list := netnsList(t)
			for _, n := range names {
				if list[n] {
					t.Errorf("namespace %s leaked by %s helper", n, mode)
					// Do not leave it on a shared machine.
					_ = exec.Command("ip", "netns", "delete", n).Run()
				}
			}
		})
	}
}

// A wedged command must not hang the suite, and everything it spawned in its
// process group must die with it. Runs only `sleep`, so it is safe anywhere.
func TestRunTimeoutKillsGroup(t *testing.T) {
	start := time.Now()
	out, err := runCmd(nil, 300*time.Millisecond, "sh", "-c", "sleep 100 & echo $!; exec sleep 100")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	bg, convErr := strconv.Atoi(strings.TrimSpace(out))
	if convErr != nil {
		t.Fatalf("cannot parse background pid from %q", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(bg) + "/stat")
		// Gone, or a zombie waiting for init: either way it is dead.
		if err != nil || strings.Contains(string(st), ") Z ") || !strings.Contains(string(st), "(sleep)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background child %d survived the timeout", bg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
