package bench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAuditCounter: the controller's requests are counted once each, by
// verb and resource, from a log that grows between reads; other users'
// requests and the end of a watch counted at its start are not.
func TestAuditCounter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	const (
		token     = `{"auditID":"1","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/a/serviceaccounts/b/token","user":{"username":"` + controllerUser + `"},"objectRef":{"resource":"serviceaccounts","subresource":"token"},"responseStatus":{"code":201}}` + "\n"
		watchUp   = `{"auditID":"2","stage":"ResponseStarted","verb":"watch","requestURI":"/api/v1/secrets?watch=true","user":{"username":"` + controllerUser + `"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":200}}` + "\n"
		watchEnd  = `{"auditID":"2","stage":"ResponseComplete","verb":"watch","requestURI":"/api/v1/secrets?watch=true","user":{"username":"` + controllerUser + `"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":200}}` + "\n"
		conflict  = `{"auditID":"3","stage":"ResponseComplete","verb":"patch","requestURI":"/apis/stsbind.dev/v1alpha1/namespaces/a/iamrolebindings/b/status","user":{"username":"` + controllerUser + `"},"objectRef":{"resource":"iamrolebindings","subresource":"status"},"responseStatus":{"code":409}}` + "\n"
		discovery = `{"auditID":"4","stage":"ResponseComplete","verb":"get","requestURI":"/apis?timeout=32s","user":{"username":"` + controllerUser + `"},"responseStatus":{"code":200}}` + "\n"
		admin     = `{"auditID":"5","stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/a/secrets","user":{"username":"admin"},"objectRef":{"resource":"secrets"},"responseStatus":{"code":201}}` + "\n"
	)
	a := newAuditCounter(path)
	steps := []struct {
		appended string
		want     requestCounts
	}{
		{appended: "", want: requestCounts{}},
		// A line cut short waits for the rest.
		{appended: token + watchUp + conflict[:40], want: requestCounts{"create serviceaccounts/token": 1, "watch secrets": 1}},
		{appended: conflict[40:] + discovery + admin + watchEnd,
			want: requestCounts{"patch iamrolebindings/status 409": 1, "get /apis": 1}},
	}
	for i, st := range steps {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(st.appended); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := a.requests()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d (-want +got):\n%s", i, diff)
		}
	}
	all := requestCounts{"create serviceaccounts/token": 3, "create secrets": 3, "update secrets": 1, "patch iamrolebindings/status 409": 1,
		"create tokenreviews": 2, "watch secrets": 1, "get /apis": 1, "get secrets": 2, "patch clusterstsproviders/status": 1}
	if got := all.perBinding(); got != 10 {
		t.Errorf("perBinding = %d, want 10 (tokens, Secret writes and reads, the failed patch)", got)
	}
	if got := all.writes("secrets"); got != 4 {
		t.Errorf("writes(secrets) = %d, want 4", got)
	}
	if got := all.reads(); got != 2 {
		t.Errorf("reads = %d, want 2", got)
	}
}
