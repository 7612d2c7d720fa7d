package config

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/applytest"
)

// TestAdmissionPolicy installs the ValidatingAdmissionPolicy and its binding
// from config/default for real and acts as tenants through impersonation:
// creating or changing an IAMRoleBinding needs permission to use its
// ServiceAccount (create serviceaccounts/token, or impersonate it).
func TestAdmissionPolicy(t *testing.T) {
	ctx := context.Background()
	const ns = "vap-team"
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vap-gitops"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"}},
		// What every tenant here may do with bindings, and no more.
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "binding-editor"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{stsbindv1.GroupVersion.Group}, Resources: []string{"iamrolebindings"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch"},
			}},
		},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "status-writer"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{stsbindv1.GroupVersion.Group}, Resources: []string{"iamrolebindings/status"},
				Verbs: []string{"get", "update", "patch"},
			}},
		},
		// The GitOps controller may impersonate app, and only app.
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "impersonate-app"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, ResourceNames: []string{"app"},
				Verbs: []string{"impersonate"},
			}},
		},
		// carol may mint app's tokens, and only app's.
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token-app"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, ResourceNames: []string{"app"},
				Verbs: []string{"create"},
			}},
		},
	} {
		create(t, o)
	}
	const gitops = "system:serviceaccount:vap-gitops:flux"
	bind(t, ns, "Role", "binding-editor", "alice", "bob", "carol", gitops)
	bind(t, ns, "Role", "status-writer", "status-writer")
	bind(t, ns, "Role", "impersonate-app", gitops)
	bind(t, ns, "Role", "token-app", "carol")
	bind(t, ns, "ClusterRole", "edit", "bob")

	alice, bob, carol, flux, statusWriter := as(t, "alice"), as(t, "bob"), as(t, "carol"), as(t, gitops), as(t, "status-writer")

	// Before the policy: alice may create a binding for any ServiceAccount of
	// the namespace (the hole the policy closes).
	if err := alice.Create(ctx, binding(ns, "before-policy", "app"), client.DryRunAll); err != nil {
		t.Fatalf("without the policy alice's binding is refused too, so nothing below tests the policy: %v", err)
	}

	installPolicy(t)
	// The API server loads policies asynchronously: poll until a known-bad
	// request is refused by this policy.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		err := alice.Create(ctx, binding(ns, "probe", "app"), client.DryRunAll)
		switch {
		case err == nil:
			return false, nil
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "may not use ServiceAccount"):
			return true, nil
		default:
			return false, err
		}
	})
	if err != nil {
		t.Fatalf("the policy was not enforced: %v", err)
	}

	t.Run("only binding permissions: refused", func(t *testing.T) {
		err := alice.Create(ctx, binding(ns, "alice-app", "app"))
		wantRefusal(t, err, "alice", ns, "app")
	})

	t.Run("namespace edit role: allowed", func(t *testing.T) {
		aggregate(t, "edit")
		for verb, attrs := range map[string]struct{ resource, subresource string }{
			"create":      {"serviceaccounts", "token"},
			"impersonate": {"serviceaccounts", ""},
		} {
			// The RBAC authorizer reads ClusterRoles from an informer: the
			// aggregated rules reach it shortly after the write.
			err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				return allowed(t, "bob", ns, verb, attrs.resource, attrs.subresource, "app"), nil
			})
			if err != nil {
				t.Errorf("edit does not grant %s on %s/%s: %v", verb, attrs.resource, attrs.subresource, err)
			}
		}
		if err := bob.Create(ctx, binding(ns, "bob-app", "app")); err != nil {
			t.Fatalf("bob (edit) may not create a binding for app: %v", err)
		}
	})

	t.Run("GitOps ServiceAccount impersonating app: allowed for app only", func(t *testing.T) {
		if err := flux.Create(ctx, binding(ns, "flux-app", "app")); err != nil {
			t.Fatalf("flux may impersonate app, yet its binding for app is refused: %v", err)
		}
		wantRefusal(t, flux.Create(ctx, binding(ns, "flux-other", "other")), gitops, ns, "other")
	})

	t.Run("update to another ServiceAccount: refused", func(t *testing.T) {
		b := binding(ns, "carol-app", "app")
		if err := carol.Create(ctx, b); err != nil {
			t.Fatalf("carol may mint app's tokens, yet her binding for app is refused: %v", err)
		}
		b.Spec.ServiceAccountName = "other"
		wantRefusal(t, carol.Update(ctx, b), "carol", ns, "other")
		b.Spec.ServiceAccountName = "app"
		b.Spec.SessionDuration = "2h"
		wantRefusal(t, alice.Update(ctx, b), "alice", ns, "app")
	})

	t.Run("metadata and status: not checked", func(t *testing.T) {
		var b stsbindv1.IAMRoleBinding
		if err := alice.Get(ctx, client.ObjectKey{Namespace: ns, Name: "flux-app"}, &b); err != nil {
			t.Fatal(err)
		}
		b.Labels = map[string]string{"team": "a"}
		if err := alice.Update(ctx, &b); err != nil {
			t.Errorf("a label change by alice is refused: %v", err)
		}
		// The controller's status writes go to the status subresource.
		b.Status.SecretName = "flux-app"
		if err := statusWriter.Status().Update(ctx, &b); err != nil {
			t.Errorf("a status write by a user who may not use app is refused: %v", err)
		}
	})
}

// aggregate fills an aggregated ClusterRole of the bootstrap policy (edit,
// view) with the rules of the ClusterRoles its aggregationRule selects, as
// kube-controller-manager's clusterrole-aggregation controller does in a
// cluster; envtest runs no controller manager, so they are empty here.
func aggregate(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	var role rbacv1.ClusterRole
	if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &role); err != nil {
		t.Fatal(err)
	}
	if role.AggregationRule == nil {
		t.Fatalf("ClusterRole %s is not aggregated", name)
	}
	if len(role.Rules) > 0 {
		return
	}
	var rules []rbacv1.PolicyRule
	for _, sel := range role.AggregationRule.ClusterRoleSelectors {
		var parts rbacv1.ClusterRoleList
		if err := env.Client.List(ctx, &parts, client.MatchingLabels(sel.MatchLabels)); err != nil {
			t.Fatal(err)
		}
		for _, p := range parts.Items {
			if p.AggregationRule != nil {
				aggregate(t, p.Name)
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&p), &p); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range p.Rules {
				if !slices.ContainsFunc(rules, func(have rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(have, r) }) {
					rules = append(rules, r)
				}
			}
		}
	}
	role.Rules = rules
	if err := env.Client.Update(ctx, &role); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClusterRole %s aggregated: %d rules", name, len(rules))
}

// installPolicy creates the ValidatingAdmissionPolicy and its binding from
// config/default's output, and removes them when the test ends.
func installPolicy(t *testing.T) {
	t.Helper()
	objs := build(t, "config/default")
	var policy admissionregistrationv1.ValidatingAdmissionPolicy
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for kind, into := range map[string]any{"ValidatingAdmissionPolicy": &policy, "ValidatingAdmissionPolicyBinding": &binding} {
		i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
		if i < 0 {
			t.Fatalf("config/default renders no %s", kind)
		}
		if err := applytest.Into(objs[i], into); err != nil {
			t.Fatal(err)
		}
	}
	if binding.Spec.PolicyName != policy.Name {
		t.Fatalf("the binding names policy %q, config/default renders %q", binding.Spec.PolicyName, policy.Name)
	}
	create(t, &policy)
	create(t, &binding)
}

func wantRefusal(t *testing.T, err error, user, ns, sa string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s's binding for %s/%s was accepted", user, ns, sa)
	}
	want := user + " may not use ServiceAccount " + ns + "/" + sa + ": an IAMRoleBinding for it needs permission to create serviceaccounts/token or to impersonate serviceaccounts named " + sa
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("want 403 with %q, got %v", want, err)
	}
}

func binding(ns, name, sa string) *stsbindv1.IAMRoleBinding {
	return &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: sa,
			RoleARN:            "arn:aws:iam::123456789012:role/k8s/" + ns + "/reader",
		},
	}
}

// as is a client that the API server authenticates as user (a
// ServiceAccount when user is system:serviceaccount:<ns>:<name>).
func as(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	if sa, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		cfg.Impersonate.Groups = append(cfg.Impersonate.Groups, "system:serviceaccounts", "system:serviceaccounts:"+strings.SplitN(sa, ":", 2)[0])
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bind grants role (a Role of ns, or a ClusterRole) in ns to the users.
func bind(t *testing.T, ns, kind, role string, users ...string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ToLower(kind) + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
	}
	for _, u := range users {
		if sa, ok := strings.CutPrefix(u, "system:serviceaccount:"); ok {
			ns, name, _ := strings.Cut(sa, ":")
			rb.Subjects = append(rb.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name})
			continue
		}
		rb.Subjects = append(rb.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: u})
	}
	create(t, rb)
}

// allowed asks the API server's authorizer (a SubjectAccessReview).
func allowed(t *testing.T, user, ns, verb, resource, subresource, name string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource, Subresource: subresource, Name: name},
	}}
	if err := env.Client.Create(context.Background(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// create creates o as the admin and deletes it when the test ends.
func create(t *testing.T, o client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), o); err != nil {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
	t.Cleanup(func() {
		err := env.Client.Delete(context.Background(), o)
		if err != nil && !apierrors.IsNotFound(err) && !errors.Is(err, context.Canceled) {
			t.Errorf("deleting %T %s: %v", o, o.GetName(), err)
		}
	})
}
