package chart

import (
	"context"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/images"
)

// TestChartUninstall: helm uninstall leaves no webhook behind, and a pod
// of a bound ServiceAccount then starts without injection. Its file sorts
// last, so the tests that need the release run before it.
func TestChartUninstall(t *testing.T) {
	requireChart(t)
	ctx := context.Background()
	if _, err := runHelm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m"); err != nil {
		t.Fatal(err)
	}
	var hooks admissionregistrationv1.MutatingWebhookConfigurationList
	if err := suite.Client.List(ctx, &hooks); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks.Items {
		t.Errorf("webhook configuration %s left behind", h.Name)
	}
	ns := suite.Namespace(t, "chart-gone", nil)
	suite.CreateBinding(t, ns, "files", stsbindv1.InjectionFiles)
	pod := suite.AppPod(ns, "plain", images.S3ClientName, "gone", "gone.txt")
	if err := suite.Client.Create(ctx, pod); err != nil {
		t.Fatalf("creating a pod after uninstall: %v", err)
	}
	if len(pod.Spec.Volumes) > 1 || len(pod.Spec.InitContainers) > 0 {
		t.Errorf("a pod was mutated after uninstall: volumes %v", pod.Spec.Volumes)
	}
}
