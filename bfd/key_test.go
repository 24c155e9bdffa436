package bfd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    *Key
		err     string
	}{
		{"plain", "s3cret", 0o600, &Key{Type: AuthKeyedSHA1, ID: 4, Secret: []byte("s3cret")}, ""},
		{"newline", "s3cret\n", 0o640, &Key{Type: AuthKeyedSHA1, ID: 4, Secret: []byte("s3cret")}, ""},
		{"twenty", strings.Repeat("k", 20), 0o400, &Key{Type: AuthKeyedSHA1, ID: 4, Secret: []byte(strings.Repeat("k", 20))}, ""},
		{"world-readable", "s3cret", 0o644, nil, "readable by others (mode 0644)"},
		{"empty", "\n", 0o600, nil, "must be 1..20 bytes"},
		{"too long", strings.Repeat("k", 21), 0o600, nil, "must be 1..20 bytes"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tt.mode); err != nil { // umask
			t.Fatal(err)
		}
		got, err := LoadKey(p, AuthKeyedSHA1, 4)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	if _, err := LoadKey(filepath.Join(dir, "missing"), AuthKeyedSHA1, 1); err == nil {
		t.Error("a missing file loaded")
	}
}
