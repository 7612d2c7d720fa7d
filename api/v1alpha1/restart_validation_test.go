package v1alpha1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// TestRestartOnRotationNeedsEnv: the API server accepts restartOnRotation:
// Rollout only where pods hold the credentials in variables (Env, or None
// with variables wired by hand), and only the two known values.
func TestRestartOnRotationNeedsEnv(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		mode     stsbindv1.InjectionMode
		restart  stsbindv1.RestartOnRotation
		wantText []string // empty: accepted
	}{
		"Env, Rollout":       {mode: stsbindv1.InjectionEnv, restart: stsbindv1.RestartRollout},
		"None, Rollout":      {mode: stsbindv1.InjectionNone, restart: stsbindv1.RestartRollout},
		"Files, Never":       {mode: stsbindv1.InjectionFiles, restart: stsbindv1.RestartNever},
		"default mode, none": {},
		"Files, Rollout": {mode: stsbindv1.InjectionFiles, restart: stsbindv1.RestartRollout,
			wantText: []string{"spec.injection.restartOnRotation", "needs mode Env"}},
		"Endpoint, Rollout": {mode: stsbindv1.InjectionEndpoint, restart: stsbindv1.RestartRollout,
			wantText: []string{"spec.injection.restartOnRotation", "needs mode Env"}},
		"default mode (Files), Rollout": {restart: stsbindv1.RestartRollout,
			wantText: []string{"spec.injection.restartOnRotation", "needs mode Env"}},
		"unknown value": {mode: stsbindv1.InjectionEnv, restart: "Always",
			wantText: []string{"spec.injection.restartOnRotation", `"Never", "Rollout"`}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec := validSpec()
			spec.Injection = stsbindv1.Injection{Mode: tc.mode, RestartOnRotation: tc.restart}
			b := &stsbindv1.IAMRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "restart-"},
				Spec:       spec,
			}
			err := k8s.Create(context.Background(), b)
			if len(tc.wantText) == 0 {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				_ = k8s.Delete(context.Background(), b)
				return
			}
			if err == nil {
				_ = k8s.Delete(context.Background(), b)
				t.Fatal("accepted")
			}
			for _, want := range tc.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
		})
	}
}
