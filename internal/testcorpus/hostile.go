package testcorpus

import (
	"fmt"
	"strings"
)

// Policy is one malformed, hostile or huge policy.
type Policy struct {
	Name       string
	Text       string
	Want       string // a substring every correct refusal contains
	Positioned bool   // the first error carries file:line:col
}

const gw = "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n"

// ManyGateways is a policy of n valid gateways whose group also names one
// that does not exist: validation must stay linear and still find it.
func ManyGateways(n int) string {
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

// Hostile returns the corpus. maxSize is the parser's size limit, passed
// in so this package need not import the parser it tests.
func Hostile(maxSize int) []Policy {
	return []Policy{
		{"too large", strings.Repeat("# padding\n", maxSize/10+1), fmt.Sprintf("more than the %d-byte limit", maxSize), false},
		{"NUL byte", "[gateway.a]\naddress = \"198.18.1.1\x00\"\n", "policy contains a NUL byte", true},
		{"invalid UTF-8", "[gateway.a]\naddress = \"\xff\xfe\"\n", "decoding TOML", true},
		{"deep nesting", "x = " + strings.Repeat("[", 50000) + strings.Repeat("]", 50000) + "\n", "unknown section [x]", true},
		{"newline in name", "[gateway.\"isp\\n1\"]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", "name must be 1..64 letters", true},
		{"terminal escape in name", "[gateway.\"\\u001b[31mred\"]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", "name must be 1..64 letters", true},
		{"long name", "[gateway." + strings.Repeat("a", 5000) + "]\naddress = \"198.18.1.1\"\ninterface = \"eth1\"\n", "name must be 1..64 letters", true},
		{"interface with slash", "[gateway.a]\naddress = \"198.18.1.1\"\ninterface = \"../../etc\"\n", "is not a valid Linux interface name", true},
		{"hook through a shell", gw + "[hook.h]\ncommand = [\"sh\", \"-c\", \"rm -rf /\"]\nevents = [\"gateway_down\"]\n", "must be an absolute path", true},
		{"hook endless timeout", gw + "[hook.h]\ncommand = [\"/bin/true\"]\nevents = [\"gateway_down\"]\ntimeout = \"87600h\"\n", "timeout 87600h0m0s is out of range", true},
		{"thousands of gateways, one bad reference", ManyGateways(3000), `gateway "nope" is not defined`, true},
		{"huge weight", gw + "weight = 99999999999999999999\n", "decoding TOML", true},
		{"table overflow", gw + "table = 4294967296\n", "is not a number in 0..4294967295", true},
		{"only garbage", "\xde\xad\xbe\xef", "decoding TOML", true},
	}
}
