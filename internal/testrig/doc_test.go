package testrig

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShippedBinariesImportNoRig: nothing under internal/testrig is linked
// into the operator or the Endpoint sidecar.
func TestShippedBinariesImportNoRig(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/stsbind/stsbind", "github.com/stsbind/stsbind/cmd/credentials-server").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list printed %d packages; the check would prove nothing", len(deps))
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/stsbind/stsbind/internal/testrig") {
			t.Errorf("a shipped binary imports the test rig %s", p)
		}
	}
}
