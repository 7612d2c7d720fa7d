package clients

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
	"github.com/stsbind/stsbind/webhook"
)

// startSidecar runs the Endpoint-mode sidecar exactly as the stored pod
// spec says (its command from the image is the built credentials-server),
// with its own view of the pod, and waits for its startup probe to pass.
func startSidecar(t *testing.T, pod *corev1.Pod, s *corev1.Secret) {
	t.Helper()
	sc := pod.Spec.InitContainers[0]
	if sc.Name != webhook.SidecarName {
		t.Fatalf("the first init container is %q, not the sidecar", sc.Name)
	}
	view, err := podview.Materialize(pod, sc.Name, map[string]*corev1.Secret{s.Name: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(view.Cleanup)
	fromImage := func(argv []string) []string {
		if argv[0] != "/credentials-server" {
			t.Fatalf("the sidecar runs %q, not the image's /credentials-server", argv[0])
		}
		return append([]string{filepath.Join(bin, "credentials-server")}, argv[1:]...)
	}
	argv := fromImage(append(append([]string{}, sc.Command...), sc.Args...))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = view.Env
	log := &testenv.SyncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
			if v := string(s.Data[k]); v != "" && strings.Contains(log.String(), v) {
				t.Errorf("the sidecar logged %s", k)
			}
		}
	})
	probe := fromImage(sc.StartupProbe.Exec.Command)
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command(probe[0], probe[1:]...).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar's startup probe never passed; its log:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
