package routingtest

import (
	"os/exec"
	"strings"
	"testing"
)

// The fake is for tests: no package of the module imports it outside its
// _test.go files, so no program the module ships links it in.
func TestNoProductionImport(t *testing.T) {
	const self = "github.com/uplinkd/uplinkd/routing/routingtest"
	// .Imports lists what a package's non-test files import.
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, "github.com/uplinkd/uplinkd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		if strings.Contains(" "+imports+" ", " github.com/uplinkd/uplinkd/routing ") {
			seen++ // a user of routing, where a stray import would be
		}
		if pkg != self && strings.Contains(" "+imports+" ", " "+self+" ") {
			t.Errorf("%s imports %s in its non-test files", pkg, self)
		}
	}
	if seen < 2 {
		t.Fatalf("go list shows %d importers of routing besides this one; the check saw nothing:\n%s", seen, out)
	}
}
