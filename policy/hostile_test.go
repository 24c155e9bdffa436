package policy

import (
	"strings"
	"testing"

	"github.com/uplinkd/uplinkd/internal/testcorpus"
)

// TestHostilePolicies feeds malformed, hostile and huge policies to Parse.
// Each must be refused with a clear error that says where (or, for
// whole-file problems, why) — never accepted, never a panic. The corpus is
// shared with the reliability suite, which runs the daemon on each.
func TestHostilePolicies(t *testing.T) {
	for _, tt := range testcorpus.Hostile(MaxPolicySize) {
		t.Run(tt.Name, func(t *testing.T) {
			_, err := Parse("hostile.toml", []byte(tt.Text), Options{})
			if err == nil {
				t.Fatal("hostile policy accepted")
			}
			errs, ok := err.(Errors)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %T %v is not policy.Errors", err, err)
			}
			if !strings.Contains(err.Error(), tt.Want) {
				t.Errorf("error %q does not contain %q", firstLines(err.Error(), 3), tt.Want)
			}
			if tt.Positioned && errs[0].Line == 0 {
				t.Errorf("first error has no position: %v", errs[0])
			}
		})
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
