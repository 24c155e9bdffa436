package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The control protocol is one request line ("reload" or "status") and a
// reply whose first line is "ok" or "error: TEXT", followed by the payload
// (the status JSON), after which the daemon closes the connection.
const (
	CmdReload = "reload"
	CmdStatus = "status"

	controlTimeout = 30 * time.Second
)

// controlServer serves the root-only control socket.
type controlServer struct {
	ln     *net.UnixListener
	path   string
	log    *slog.Logger
	handle func(ctx context.Context, cmd string) (string, error)

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// listenControl creates the socket, mode 0600 in a 0700 directory, both
// owned by root. A socket that answers belongs to a running uplinkd and is
// left alone; a stale one is replaced.
func listenControl(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating control socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("creating control socket: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("creating control socket: %s is in use: is another uplinkd running?", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	// The umask makes the socket private from the moment it exists; the
	// chmod below only restates it.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("creating control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("creating control socket: %w", err)
	}
	// Only when needed: under systemd's bounding set there is no CAP_CHOWN,
	// and a socket created by root is root's already.
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
			if err := os.Lchown(path, 0, 0); err != nil {
				ln.Close()
				return nil, fmt.Errorf("creating control socket: %w", err)
			}
		}
	}
	return ln, nil
}

func (s *controlServer) serve(ctx context.Context) error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accepting control connection: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.conn(ctx, c)
		}()
	}
}

func (s *controlServer) conn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(controlTimeout))
	// Defence in depth behind the 0600 mode: only root may talk to us.
	if uid, err := peerUID(c); err != nil || uid != 0 {
		s.log.Warn("control connection refused: peer is not root", "uid", uid, "err", err)
		fmt.Fprintf(c, "error: only root may use the control socket\n")
		return
	}
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	cmd := strings.TrimSpace(line)
	out, err := s.handle(ctx, cmd)
	if err != nil {
		fmt.Fprintf(c, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	fmt.Fprintf(c, "ok\n%s", out)
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

func (s *controlServer) close() {
	s.closeOnce.Do(func() { s.ln.Close() })
	s.wg.Wait()
}

// Control sends one command to a running daemon's control socket and
// returns the payload of an "ok" reply.
func Control(ctx context.Context, path, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("connecting to uplinkd control socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(controlTimeout))
	}
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return "", fmt.Errorf("sending %s to uplinkd: %w", cmd, err)
	}
	data, err := io.ReadAll(io.LimitReader(c, 16<<20))
	if err != nil {
		return "", fmt.Errorf("reading uplinkd's reply to %s: %w", cmd, err)
	}
	first, rest, _ := strings.Cut(string(data), "\n")
	switch {
	case first == "ok":
		return rest, nil
	case strings.HasPrefix(first, "error: "):
		return "", errors.New(strings.TrimPrefix(first, "error: "))
	}
	return "", fmt.Errorf("reading uplinkd's reply to %s: unexpected %q", cmd, first)
}

// control handles one control-socket command.
func (c *Core) control(ctx context.Context, cmd string) (string, error) {
	switch cmd {
	case CmdReload:
		if err := c.Reload(ctx); err != nil {
			return "", fmt.Errorf("reload refused: %w", err)
		}
		return "policy reloaded\n", nil
	case CmdStatus:
		return statusJSON(c.Status())
	}
	return "", fmt.Errorf("unknown command %q (want %s or %s)", cmd, CmdReload, CmdStatus)
}
