package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// TestGeneratedRBACIsEnough runs the controller as a user that holds only the
// ClusterRole generated from the markers (config/rbac/role.yaml), not as the
// admin envtest otherwise uses, and expects the whole loop to work: token,
// Secret, status and events.k8s.io Events.
func TestGeneratedRBACIsEnough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatal(err)
	}
	role.Name = "stsbind-rbac-test"
	f := newFixture(t)
	f.create(&role)
	const user = "stsbind-rbac-test"
	f.create(&rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "stsbind-rbac-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})
	restricted, err := env.ControlPlane.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}

	mctx, stop := context.WithCancel(ctx)
	defer stop()
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"rbac"}))
	if _, err := startManager(mctx, managerOptions{bindingSelector: only, skipNameCheck: true, config: restricted.Config()}); err != nil {
		t.Fatal(err)
	}
	f.serviceAccount()
	f.binding("least-privilege", func(b *stsbindv1.IAMRoleBinding) { b.Labels = map[string]string{labelRestart: "rbac"} })
	f.waitReady("least-privilege", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	ev := f.waitEvent("least-privilege", corev1.EventTypeNormal, "CredentialsIssued")
	if ev.ReportingController == "" {
		t.Errorf("event without a reporting controller: %+v", ev)
	}
	if s := f.secret("least-privilege"); len(s.Data) != 7 {
		t.Errorf("Secret has %d keys", len(s.Data))
	}
}
