package node

import (
	"strings"
	"testing"
)

// A machine without the CNI plugins is told which files are missing, from
// which package, and what to install.
func TestCheckHostPackagesNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	err := CheckHostPackages(t.TempDir())
	if err == nil {
		t.Fatal("no error for a CNI dir without plugins")
	}
	for _, want := range []string{"/bridge (from Debian containernetworking-plugins)", "/host-local (from", "/loopback (from", "apt-get install " + debianPackages} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
