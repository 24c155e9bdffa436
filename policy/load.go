package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uplinkd/uplinkd/internal/securefile"
)

// ParseRTTables reads iproute2's rt_tables format: "NUMBER NAME" lines,
// '#' comments. Malformed lines are skipped, as iproute2 itself does.
func ParseRTTables(data []byte) map[string]uint32 {
	out := map[string]uint32{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 0, 32)
		if err != nil {
			continue
		}
		out[f[1]] = uint32(n)
	}
	return out
}

// RTTablesPaths are read in order by LoadRTTables; later files win, as in
// iproute2 (the .d directory entries override the main file).
var RTTablesPaths = []string{"/usr/share/iproute2/rt_tables", "/etc/iproute2/rt_tables", "/etc/iproute2/rt_tables.d/*.conf"}

// LoadRTTables reads the host's table names. Missing files are fine.
func LoadRTTables() map[string]uint32 {
	out := map[string]uint32{}
	for _, pattern := range RTTablesPaths {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for k, v := range ParseRTTables(data) {
				out[k] = v
			}
		}
	}
	return out
}

// Load reads a policy file and the host's rt_tables, then parses. The file
// is opened once and must be a regular file; at most MaxPolicySize+1 bytes
// are read from it, so /dev/zero or a FIFO with no writer is refused at
// once instead of exhausting memory or hanging.
func Load(file string) (*Policy, error) { return load(file, securefile.Any) }

// LoadTrusted is Load for a policy the daemon will act on: the file and
// every directory on its path as written, including those holding a
// symlink, must be owned by root and not writable by group or others. The
// checks apply to the descriptor that is read, so nothing can change
// between the check and the read.
func LoadTrusted(file string) (*Policy, error) { return load(file, securefile.Trusted) }

func load(file string, mode securefile.Mode) (*Policy, error) {
	data, err := securefile.ReadFile(file, MaxPolicySize, mode)
	var big *securefile.TooLargeError
	if errors.As(err, &big) {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("policy is more than the %d-byte limit", MaxPolicySize)}}
	}
	if err != nil {
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return Parse(file, data, Options{TableNames: LoadRTTables()})
}
