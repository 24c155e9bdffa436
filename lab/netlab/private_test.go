package netlab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPeerArgsRefusesScratch: a scratch dir the overlays would hide, a
// relative one or a non-empty one is refused before anything runs.
func TestPeerArgsRefusesScratch(t *testing.T) {
	h := &Host{Name: "a", NS: "upl000000-a"}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"/run/user/0/x", "is under /run"},
		{"/etc", "is under /etc"},
		{"/var/lib/x", "is under /var/lib"},
		{"rel", "not absolute"},
		{full, "not empty"},
	} {
		if _, err := h.PeerArgs(tc.dir, []string{"true"}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PeerArgs(%q) = %v, want an error containing %q", tc.dir, err, tc.want)
		}
	}
	argv, err := h.PeerArgs(t.TempDir(), []string{"zebra", "-d"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(argv[:9], " "); got != "ip netns exec upl000000-a unshare --mount --propagation private --" {
		t.Errorf("argv starts %q", got)
	}
	if got := strings.Join(argv[len(argv)-2:], " "); got != "zebra -d" {
		t.Errorf("argv ends %q, want the daemon exec'd last", got)
	}
}
