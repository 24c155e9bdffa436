package nstest

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is shared by a process's stdout and stderr; os/exec copies them
// from two goroutines, and tests read it while the process still runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child running in its own process group.
//
// The group is signalled by its id, and process-group ids are PIDs, which get
// recycled (pid_max is only 32768 here). A group id is only guaranteed to be
// ours while the leader has not been reaped, so a watcher goroutine first
// waits for the exit *without reaping* (WNOWAIT), kills whatever is left in
// the group while the zombie leader still pins the id, marks the proc exited
// under mu, and only then reaps. kill() takes the same lock and refuses to
// signal once exited is set. That closes the window in which a
// kill(-pgid) could land on an unrelated process group.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	pid  int
	args []string

	mu     sync.Mutex
	exited bool

	done chan struct{} // closed after the leader has been reaped
	err  error         // cmd.Wait result, valid after done
}

// waitDelay bounds how long reaping waits for output pipes held open by
// stray descendants that escaped the group kill (e.g. via setsid).
const waitDelay = 5 * time.Second

func startProc(stdin io.Reader, args []string) (*proc, error) {
	if len(args) == 0 {
		return nil, errors.New("nstest: empty command")
	}
	out := &syncBuffer{}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = stdin
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = waitDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own group: lets cleanup kill the command and everything it spawned
		// without touching the test binary's group.
		Setpgid: true,
		// If the test binary dies without running cleanups (e.g. -timeout
		// panic, SIGKILL), do not leave daemons running in a namespace
		// nobody will delete. Pdeathsig follows the creating OS thread, which
		// in Go only exits for goroutines that die while locked; that only
		// happens in Do after a failed namespace restore, where killing the
		// children is the right outcome anyway.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, out: out, pid: cmd.Process.Pid, args: args, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

func (p *proc) watch() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	// The leader is a zombie now, so -pid still names our group: take down
	// any descendants that would otherwise keep running (and keep the output
	// pipes, and the namespace, alive).
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	p.exited = true
	p.mu.Unlock()
	p.err = p.cmd.Wait()
	close(p.done)
}

// kill sends SIGKILL to the whole process group unless the leader has
// already exited (in which case watch has done it).
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = unix.Kill(-p.pid, unix.SIGKILL)
	}
}

// stop kills and reaps, bounded in time. It reports false if the process
// could not be reaped, which should only happen if it is stuck in the kernel
// (D state).
func (p *proc) stop(timeout time.Duration) bool {
	p.kill()
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// wait blocks until the process has exited and been reaped, or the timeout
// expires; on timeout the group is killed and reaped before returning.
func (p *proc) wait(timeout time.Duration) (timedOut bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
		p.stop(waitDelay + 5*time.Second)
		return true
	}
}
