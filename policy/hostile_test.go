package policy

import (
	"fmt"
	"strings"
	"testing"
)

// TestHostilePolicies feeds malformed, hostile and huge policies to Parse.
// Each must be refused with a clear error that says where (or, for
// whole-file problems, why) — never accepted, never a panic.
func TestHostilePolicies(t *testing.T) {
	manyGateways := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "[gateway.g%d]\naddress = \"198.18.%d.%d\"\ninterface = \"eth1\"\n", i, i/250, i%250+1)
		}
		b.WriteString("[group.wan]\ngateways = [")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "\"g%d\", ", i)
		}
		b.WriteString("\"nope\"]\n")
		return b.String()
	}
	tests := []struct {
		name       string
		src        string
		wantSubstr string
		positioned bool
	}{
		{"too large", strings.Repeat("# padding\n", MaxPolicySize/10+1), "more than the 1048576-byte limit", false},
		{"NUL byte", "[gateway.a]\naddress = \"198.18.1.1\x00\"\n", "policy contains a NUL byte", true},
		{"invalid UTF-8", "[gateway.a]\naddress = \"\xff\xfe\"\n", "decoding TOML", true},
		{"deep nesting", "x = " + strings.Repeat("[", 50000) + strings.Repeat("]", 50000) + "\n", "unknown section [x]", true},
		{"newline in name", "[gateway.\"isp\\n1\"]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", `name must be 1..64 letters`, true},
		{"terminal escape in name", "[gateway.\"\\u001b[31mred\"]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", `name must be 1..64 letters`, true},
		{"long name", "[gateway." + strings.Repeat("a", 5000) + "]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", `name must be 1..64 letters`, true},
		{"interface with slash", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"../../etc\"\n", `is not a valid Linux interface name`, true},
		{"hook through a shell", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[hook.h]\ncommand = [\"sh\", \"-c\", \"rm -rf /\"]\nevents = [\"gateway_down\"]\n", "must be an absolute path", true},
		{"hook endless timeout", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n[hook.h]\ncommand = [\"/bin/true\"]\nevents = [\"gateway_down\"]\ntimeout = \"87600h\"\n", "timeout 87600h0m0s is out of range", true},
		{"thousands of gateways, one bad reference", manyGateways(3000), `gateway "nope" is not defined`, true},
		{"huge weight", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\nweight = 99999999999999999999\n", "decoding TOML", true},
		{"table overflow", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\ntable = 4294967296\n", "is not a number in 0..4294967295", true},
		{"only garbage", "\xde\xad\xbe\xef", "decoding TOML", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("hostile.toml", []byte(tt.src), Options{})
			if err == nil {
				t.Fatal("hostile policy accepted")
			}
			errs, ok := err.(Errors)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %T %v is not policy.Errors", err, err)
			}
			if !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Errorf("error %q does not contain %q", firstLines(err.Error(), 3), tt.wantSubstr)
			}
			if tt.positioned && errs[0].Line == 0 {
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
