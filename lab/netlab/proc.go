package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is shared by a process's stdout and stderr; os/exec copies them
// from two goroutines, and callers read it while the process still runs.
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

// Proc is a child running in its own process group.
//
// The group is signalled by its id, and process-group ids are PIDs, which get
// recycled (pid_max is only 32768 on some machines). A group id is only
// guaranteed to be ours while the leader has not been reaped, so a watcher
// goroutine first waits for the exit *without reaping* (WNOWAIT), kills
// whatever is left in the group while the zombie leader still pins the id,
// marks the Proc exited under mu, and only then reaps. Every signal takes the
// same lock and is refused once exited is set. That closes the window in
// which a kill(-pgid) could land on an unrelated process group.
type Proc struct {
	Cmd  *exec.Cmd
	Pid  int
	Args []string

	out *syncBuffer

	mu     sync.Mutex
	exited bool

	done chan struct{} // closed after the leader has been reaped
	err  error         // cmd.Wait result, valid after done
}

// waitDelay bounds how long reaping waits for output pipes held open by
// stray descendants that escaped the group kill (e.g. via setsid).
const waitDelay = 5 * time.Second

// StopTimeout bounds how long Stop waits for a killed process to be reaped.
const StopTimeout = 15 * time.Second

func startProc(stdin io.Reader, args []string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	out := &syncBuffer{}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = stdin
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = waitDelay
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own group: lets cleanup kill the command and everything it spawned
		// without touching our own group.
		Setpgid: true,
		// If we die without running cleanups (test -timeout panic, SIGKILL),
		// do not leave daemons running in a namespace nobody will delete.
		// Pdeathsig follows the creating OS thread, which in Go only exits
		// for goroutines that die while locked; that only happens in Do
		// after a failed namespace restore, where killing the children is
		// the right outcome anyway.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, out: out, Pid: cmd.Process.Pid, Args: args, done: make(chan struct{})}
	go p.watch()
	return p, nil
}

func (p *Proc) watch() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	// The leader is a zombie now, so -pid still names our group: take down
	// any descendants that would otherwise keep running (and keep the output
	// pipes, and the namespace, alive).
	_ = unix.Kill(-p.Pid, unix.SIGKILL)
	p.exited = true
	p.mu.Unlock()
	p.err = p.Cmd.Wait()
	close(p.done)
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status (exec.Cmd.Wait's error); valid after Done.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("process still running")
	}
}

// Signal sends sig to the process (the leader only, not its group), unless
// it has already exited. Used for a graceful SIGTERM before Stop.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	return unix.Kill(p.Pid, sig)
}

// kill sends SIGKILL to the whole process group unless the leader has
// already exited (in which case watch has done it).
func (p *Proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = unix.Kill(-p.Pid, unix.SIGKILL)
	}
}

// Stop kills the process group with SIGKILL and reaps it, bounded by
// StopTimeout. It is idempotent. The error says the process could not be
// reaped, which only happens if it is stuck in the kernel (D state).
func (p *Proc) Stop() error {
	p.kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(StopTimeout):
		return fmt.Errorf("process %d (%q) could not be reaped", p.Pid, strings.Join(p.Args, " "))
	}
}

// Terminate asks the process to exit with SIGTERM, waits up to grace, then
// falls back to Stop. It returns the exit error of a graceful exit.
func (p *Proc) Terminate(grace time.Duration) error {
	_ = p.Signal(unix.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		if err := p.Stop(); err != nil {
			return err
		}
		return fmt.Errorf("process %d (%q) ignored SIGTERM for %v; killed", p.Pid, strings.Join(p.Args, " "), grace)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// error. On timeout the process group is killed and an error is returned.
func (p *Proc) Wait(timeout time.Duration) error {
	if p.waitTimeout(timeout) {
		return fmt.Errorf("%q did not exit within %v; killed", strings.Join(p.Args, " "), timeout)
	}
	return p.err
}

// waitTimeout blocks until the process has exited and been reaped, or the
// timeout expires; on timeout the group is killed and reaped first.
func (p *Proc) waitTimeout(timeout time.Duration) (timedOut bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
		_ = p.Stop()
		return true
	}
}

// RunCmd runs args in the caller's namespace with a timeout, in its own
// process group (killed wholesale on timeout), and returns the combined
// output.
func RunCmd(stdin io.Reader, timeout time.Duration, args ...string) (string, error) {
	p, err := startProc(stdin, args)
	if err != nil {
		return "", err
	}
	if p.waitTimeout(timeout) {
		return p.Output(), fmt.Errorf("%q timed out after %v (process group killed)", strings.Join(args, " "), timeout)
	}
	return p.Output(), p.err
}
