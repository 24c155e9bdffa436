package hooks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every hook run goes through a reaper: the daemon's own binary re-executed
// (/proc/self/exe, which stays valid across an upgrade of the file) as a
// child subreaper (PR_SET_CHILD_SUBREAPER). Whatever the hook starts, with
// setsid, double forks or a child that keeps the output pipe open, is
// reparented to the reaper when its parent exits, and the reaper kills and
// reaps all of it before it exits itself. So when a run ends, nothing it
// started is left running as root. A process group (the old way) misses a
// setsid'd child; a cgroup or a PID namespace would need CAP_SYS_ADMIN,
// which the daemon drops.
//
// The daemon hands the reaper, by descriptor number:
//
//	0      /dev/null
//	1, 2   the output pipe
//	3      the hook executable, opened and checked by securefile
//	4      the status pipe, on which the reaper reports how the hook ended
//	5      the lifeline: the read end of a pipe the daemon holds open for the
//	       run; end of file means the daemon is gone, and the run is ended
//	       as on SIGTERM (Pdeathsig would follow the forking thread, not
//	       the process, and the Go runtime may retire threads)
//
// The hook is executed through /proc/self/fd/3, so what runs is exactly the
// file that was checked, and a script's interpreter can still read it.
const (
	reaperArg0 = "uplinkd-hook-reaper"
	reaperEnv  = "UPLINKD_HOOK_REAPER=1"
	hookFD     = 3
	statusFD   = 4
	lifeFD     = 5
)

func init() {
	// Both markers, so neither an operator's stray variable nor an odd
	// argv[0] alone turns the daemon into a reaper.
	if len(os.Args) > 1 && os.Args[0] == reaperArg0 && os.Getenv("UPLINKD_HOOK_REAPER") == "1" {
		os.Exit(reapMain(os.Args[1:]))
	}
}

// reapMain runs one hook and everything it starts to the end. It exits 0
// whenever it could report a status, which the daemon reads instead.
func reapMain(argv []string) int {
	status := os.NewFile(statusFD, "status")
	unix.CloseOnExec(statusFD)
	unix.CloseOnExec(lifeFD)
	report := func(format string, a ...any) int {
		fmt.Fprintf(status, format+"\n", a...)
		return 0
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return report("error becoming a subreaper: %v", err)
	}
	// SIGTERM is the daemon's timeout or shutdown, and the lifeline's end
	// of file its death: end the run the same way as a normal exit.
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		life := os.NewFile(lifeFD, "lifeline")
		io.Copy(io.Discard, life)
		term <- syscall.SIGTERM
	}()

	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if kv != reaperEnv {
			env = append(env, kv)
		}
	}
	cmd := &exec.Cmd{
		Path:       fmt.Sprintf("/proc/self/fd/%d", hookFD),
		Args:       argv,
		Env:        env,
		Dir:        "/",
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{os.NewFile(hookFD, argv[0])},
	}
	if err := cmd.Start(); err != nil {
		return report("error executing %s: %v", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-term:
		// Kill the hook itself first and let Wait reap it: a wait4(-1)
		// racing cmd.Wait could take its status.
		cmd.Process.Kill()
		err = <-exited
	}
	killDescendants()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return report("exit 0")
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return report("signal %d", int(ws.Signal()))
		}
		return report("exit %d", ee.ExitCode())
	default:
		return report("error %v", err)
	}
}

// killDescendants SIGKILLs every child of the reaper and reaps it, until
// there is none. As a subreaper it inherits each orphan when its parent
// dies, so killing the children level by level reaches every descendant.
// It blocks in wait4 only after killing every child it saw: each of those
// will die and wake it, and it looks again after every death.
func killDescendants() {
	self := os.Getpid()
	for {
		kids := childrenOf(self)
		for _, pid := range kids {
			unix.Kill(pid, unix.SIGKILL)
		}
		flags := 0
		if len(kids) == 0 {
			flags = unix.WNOHANG
		}
		pid, err := unix.Wait4(-1, nil, flags, nil)
		if errors.Is(err, unix.ECHILD) {
			return
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		_ = pid // a reaped child, or none yet: look again
	}
}

// childrenOf lists the processes whose parent is pid, from /proc/*/stat
// (the per-task children files need CONFIG_PROC_CHILDREN, which not every
// kernel has).
func childrenOf(pid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []int
	for _, n := range names {
		p, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(p); ok && ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

func parentOf(pid int) (int, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, false
	}
	f2 := strings.Fields(line[i+1:])
	if len(f2) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f2[1])
	return ppid, err == nil
}

// parseStatus reads the reaper's report.
func parseStatus(s string) (exit int, signaled bool, startErr string, ok bool) {
	s = strings.TrimSpace(s)
	kind, rest, _ := strings.Cut(s, " ")
	switch kind {
	case "exit":
		n, err := strconv.Atoi(rest)
		return n, false, "", err == nil
	case "signal":
		n, err := strconv.Atoi(rest)
		return n, true, "", err == nil
	case "error":
		return 0, false, rest, true
	}
	return 0, false, "", false
}
