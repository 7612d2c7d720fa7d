// Package config tests the kustomize install: `kustomize build config/default`
// and config/samples applied to a real API server (server-side dry run), and
// the names the manager's flag defaults expect.
package config

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/stsbind/stsbind/internal/testrig/applytest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

const namespace = "stsbind-system"

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, err := applytest.Run(applytest.Tool(t, "kustomize"), "build", dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := applytest.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestDryRun applies config/default (CRDs for real, the rest with server-side
// dry run), then the samples.
func TestDryRun(t *testing.T) {
	ctx := context.Background()
	a, err := applytest.NewApplier(env.Config, namespace)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	res, errs := a.Install(ctx, build(t, "config/default"))
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("config/default: API server accepted %d CRDs (applied) and %d of %d objects (server-side dry run)", res.CRDs, res.Accepted, res.Tried)

	samples := build(t, "config/samples")
	accepted, errs := a.DryRun(ctx, samples)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("config/samples: API server accepted %d of %d objects (server-side dry run)", accepted, len(samples))
}

// TestDefaultInstallWiring checks what the API server cannot: the manager
// runs with flags main.go defines, finds the Secret, Service and webhook
// configuration its defaults name, and the webhook skips the control plane
// and the operator's own namespace.
func TestDefaultInstallWiring(t *testing.T) {
	objs := build(t, "config/default")
	flags, err := applytest.ManagerFlags()
	if err != nil {
		t.Fatal(err)
	}
	o := applytest.Find(objs, "Deployment", "stsbind-controller-manager")
	if o == nil {
		t.Fatal("no Deployment stsbind-controller-manager")
	}
	var dep appsv1.Deployment
	if err := applytest.Into(o, &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	manager := pod.Containers[0]
	if unknown := applytest.UnknownFlags(manager.Args, flags); len(unknown) > 0 {
		t.Errorf("flags main.go does not define: %v", unknown)
	}
	if !slices.ContainsFunc(manager.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil
	}) {
		t.Error("the manager lacks POD_NAMESPACE, which the self-managed certificate needs")
	}

	for flagName, kind := range map[string]string{
		"webhook-cert-secret":   "Secret",
		"webhook-service":       "Service",
		"webhook-configuration": "MutatingWebhookConfiguration",
	} {
		name := flags[flagName]
		if name == "" {
			t.Errorf("main.go has no default for --%s", flagName)
			continue
		}
		found := applytest.Find(objs, kind, name)
		if found == nil {
			t.Errorf("--%s defaults to %s; config/default renders no %s of that name", flagName, name, kind)
			continue
		}
		if kind != "MutatingWebhookConfiguration" && found.GetNamespace() != namespace {
			t.Errorf("%s %s is in %q, not %s", kind, name, found.GetNamespace(), namespace)
		}
	}
	if got := pod.Volumes[0].Secret.SecretName; got != flags["webhook-cert-secret"] {
		t.Errorf("the Deployment mounts Secret %s, the manager writes %s", got, flags["webhook-cert-secret"])
	}

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := applytest.Into(applytest.Find(objs, "MutatingWebhookConfiguration", flags["webhook-configuration"]), &mwc); err != nil {
		t.Fatal(err)
	}
	for _, wh := range mwc.Webhooks {
		if wh.ClientConfig.Service.Namespace != namespace || wh.ClientConfig.Service.Name != flags["webhook-service"] {
			t.Errorf("webhook %s calls %s/%s", wh.Name, wh.ClientConfig.Service.Namespace, wh.ClientConfig.Service.Name)
		}
		sel := wh.NamespaceSelector
		excluded := sel != nil && slices.ContainsFunc(sel.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
			return e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" &&
				slices.Contains(e.Values, "kube-system") && slices.Contains(e.Values, namespace)
		})
		if !excluded {
			t.Errorf("webhook %s namespaceSelector %+v does not exclude kube-system and %s", wh.Name, sel, namespace)
		}
	}

	// The operator may update its own webhook configuration and no other.
	var role rbacv1.ClusterRole
	if err := applytest.Into(applytest.Find(objs, "ClusterRole", "stsbind-manager-role"), &role); err != nil {
		t.Fatal(err)
	}
	updates := 0
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "list" && v != "watch" }) {
			updates++
			if !slices.Equal(r.ResourceNames, []string{flags["webhook-configuration"]}) {
				t.Errorf("the manager may %v mutatingwebhookconfigurations %v; want update on %s only", r.Verbs, r.ResourceNames, flags["webhook-configuration"])
			}
		}
	}
	if updates != 1 {
		t.Errorf("%d rules let the manager change mutatingwebhookconfigurations, want one (its own)", updates)
	}

	var svc corev1.Service
	if err := applytest.Into(applytest.Find(objs, "Service", flags["webhook-service"]), &svc); err != nil {
		t.Fatal(err)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("the webhook Service selects %v; the manager's pods are labelled %v", svc.Spec.Selector, dep.Spec.Template.Labels)
	}

	sa := pod.ServiceAccountName
	if applytest.Find(objs, "ServiceAccount", sa) == nil {
		t.Errorf("the Deployment runs as ServiceAccount %s, which is not rendered", sa)
	}
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range subjects {
			s := s.(map[string]any)
			if s["name"] != sa || s["namespace"] != namespace {
				t.Errorf("%s %s binds %v, not %s/%s", o.GetKind(), o.GetName(), s, namespace, sa)
			}
		}
	}
}
