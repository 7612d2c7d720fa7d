package charts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/operator"
	"github.com/stsbind/stsbind/internal/testrig/applytest"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
	"github.com/stsbind/stsbind/webhook"
)

// TestChartRBACRunsTheOperator runs the controller and the certificate
// rotator as the chart's ServiceAccount, holding exactly the RBAC the chart
// renders with watchNamespaces=[rbac-a] and self-managed certificates: a
// binding in rbac-a gets Ready=True through the in-test STS, the rotator
// fills the certificate Secret and the webhook's caBundle; the same identity
// is refused (403) tokens, Secrets and bindings in rbac-b and writes to any
// other webhook configuration or Secret of the release namespace. Every
// namespaced permission of config/rbac/role.yaml is then checked with a
// SubjectAccessReview: allowed in rbac-a, refused in rbac-b.
func TestChartRBACRunsTheOperator(t *testing.T) {
	ctx := context.Background()
	const (
		rel      = "rbactest"
		nsA, nsB = "rbac-a", "rbac-b"
		audience = "sts.rbactest.example"
		role     = "arn:aws:iam::123456789012:role/rbactest"
	)
	fake := ststest.NewServer()
	defer fake.Close()
	for _, ns := range []string{nsA, nsB, namespace} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}

	out, err := applytest.Run(applytest.Tool(t, "helm"), "template", rel, chart, "--namespace", namespace,
		"--set", "watchNamespaces={"+nsA+"}",
		"--set", "defaultProvider.name="+rel,
		"--set", "defaultProvider.endpoint="+fake.URL,
		"--set", "defaultProvider.audience="+audience)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := applytest.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	// What an install creates that the operator's identity and its
	// certificate depend on; the Deployment is replaced by the manager below.
	applied := 0
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
			"Secret", "MutatingWebhookConfiguration", "ClusterSTSProvider":
			createForTest(t, o)
			applied++
		}
	}
	dep := typed[appsv1.Deployment](t, objs, "Deployment", rel+"-stsbind")
	args := managerArgs(t, dep)
	sa := "system:serviceaccount:" + namespace + ":" + dep.Spec.Template.Spec.ServiceAccountName
	t.Logf("created %d rendered objects; the manager runs as %s, --watch-namespaces=%s", applied, sa, args["watch-namespaces"])

	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	logs := &testenv.SyncBuffer{}
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	for _, ns := range []string{nsA, nsB} {
		createForTest(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})
	}
	certDir := t.TempDir()
	ready := startOperator(t, cfg, logs, args, certDir)
	mctx, stopMount := context.WithCancel(ctx)
	mounted := make(chan struct{})
	go func() {
		defer close(mounted)
		mountSecret(mctx, t, args["webhook-cert-secret"], certDir, ready)
	}()
	defer func() {
		stopMount()
		<-mounted
	}()

	t.Run("works in its namespace", func(t *testing.T) {
		createForTest(t, &stsbindv1.IAMRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "creds"},
			Spec:       stsbindv1.IAMRoleBindingSpec{ServiceAccountName: "app", RoleARN: role},
		})
		var b stsbindv1.IAMRoleBinding
		waitUntil(t, 60*time.Second, "binding Ready=True", func() (bool, error) {
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: nsA, Name: "creds"}, &b); err != nil {
				return false, err
			}
			return meta.IsStatusConditionTrue(b.Status.Conditions, stsbindv1.ConditionReady), nil
		})
		if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c.Reason != stsbindv1.ReasonCredentialsIssued {
			t.Errorf("Ready=True with reason %s", c.Reason)
		}
		var s corev1.Secret
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: nsA, Name: "creds"}, &s); err != nil || len(s.Data["AWS_SESSION_TOKEN"]) == 0 {
			t.Errorf("no credentials Secret: %v", err)
		}
		if n := fake.CallCount(role); n != 1 {
			t.Errorf("%d STS calls, want 1", n)
		}
		waitUntil(t, 30*time.Second, "a CredentialsIssued event", func() (bool, error) {
			var evs eventsv1.EventList
			if err := env.Client.List(ctx, &evs, client.InNamespace(nsA)); err != nil {
				return false, err
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == "creds" && e.Reason == stsbindv1.ReasonCredentialsIssued {
					return true, nil
				}
			}
			return false, nil
		})
		waitUntil(t, 30*time.Second, "the provider's status to count the binding", func() (bool, error) {
			var p stsbindv1.ClusterSTSProvider
			if err := env.Client.Get(ctx, client.ObjectKey{Name: rel}, &p); err != nil {
				return false, err
			}
			return p.Status.Bindings == 1, nil
		})
	})

	t.Run("rotates its webhook certificate", func(t *testing.T) {
		select {
		case <-ready:
		case <-time.After(60 * time.Second):
			t.Fatal("the certificate was not mounted and injected within 60s")
		}
		var mwc unstructured.Unstructured
		mwc.SetAPIVersion("admissionregistration.k8s.io/v1")
		mwc.SetKind("MutatingWebhookConfiguration")
		if err := env.Client.Get(ctx, client.ObjectKey{Name: args["webhook-configuration"]}, &mwc); err != nil {
			t.Fatal(err)
		}
		hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
		if ca, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle"); ca == "" {
			t.Error("the rotator did not inject the caBundle")
		}
	})

	t.Run("refused elsewhere", func(t *testing.T) {
		op, err := client.New(cfg, client.Options{Scheme: env.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		createForTest(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "app-data"}})
		createForTest(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rbactest-other"}})
		other := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
			"metadata": map[string]any{"name": "rbactest-other"},
		}}
		createForTest(t, other)

		token := func(ns string) error {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}
			tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}}}
			return op.SubResource("token").Create(ctx, sa, tr)
		}
		if err := token(nsA); err != nil {
			t.Fatalf("the operator may not mint app's token in %s: %v", nsA, err)
		}
		refusals := map[string]error{
			"mint a token in " + nsB: token(nsB),
			"get a Secret in " + nsB: op.Get(ctx, client.ObjectKey{Namespace: nsB, Name: "app-data"}, &corev1.Secret{}),
			"list Secrets in " + nsB: op.List(ctx, &corev1.SecretList{}, client.InNamespace(nsB)),
			"create a Secret in " + nsB: op.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "planted"},
			}),
			"list bindings in " + nsB:                      op.List(ctx, &stsbindv1.IAMRoleBindingList{}, client.InNamespace(nsB)),
			"update another Secret of " + namespace:        op.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rbactest-other"}}),
			"update another webhook configuration":         op.Update(ctx, other.DeepCopy()),
			"get the certificate Secret (the cache reads)": op.Get(ctx, client.ObjectKey{Namespace: namespace, Name: args["webhook-cert-secret"]}, &corev1.Secret{}),
		}
		for what, err := range refusals {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: want 403, got %v", what, err)
			}
		}
	})

	t.Run("every generated namespaced permission, by SubjectAccessReview", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		generated, err := applytest.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		scoped := namespacedResources(t)
		checked := 0
		for _, p := range permissions(rules(t, applytest.Find(generated, "ClusterRole", "manager-role")), "") {
			resource, sub, _ := strings.Cut(p.Resource, "/")
			if !scoped[p.Group+"/"+resource] {
				continue
			}
			for ns, want := range map[string]bool{nsA: true, nsB: false} {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User:   sa,
					Groups: cfg.Impersonate.Groups,
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: ns, Verb: p.Verb, Group: p.Group, Resource: resource, Subresource: sub,
					},
				}}
				if err := env.Client.Create(ctx, sar); err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed != want {
					t.Errorf("%s %s/%s in %s: allowed %v, want %v", p.Verb, p.Group, p.Resource, ns, sar.Status.Allowed, want)
				}
				checked++
			}
		}
		t.Logf("%d SubjectAccessReviews", checked)
	})
}

// startOperator starts what main.go runs, as cfg's identity, with the flags
// the chart passes: the controllers (operator.Setup), a cache limited to
// --watch-namespaces, and the self-managed certificate rotator. The returned
// channel closes once the certificate is mounted and the caBundle injected.
func startOperator(t *testing.T, cfg *rest.Config, logs *testenv.SyncBuffer, args map[string]string, certDir string) <-chan struct{} {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	watched := strings.Split(args["watch-namespaces"], ",")
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  operator.CacheOptions(watched),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	maxConcurrent, err := strconv.Atoi(args["max-concurrent-reconciles"])
	if err != nil {
		t.Fatalf("--max-concurrent-reconciles: %v", err)
	}
	restarts, err := strconv.ParseBool(args["restart-on-rotation"])
	if err != nil {
		t.Fatalf("--restart-on-rotation: %v", err)
	}
	minInterval, err := time.ParseDuration(args["restart-min-interval"])
	if err != nil {
		t.Fatalf("--restart-min-interval: %v", err)
	}
	if err := operator.Setup(ctx, mgr, operator.Options{
		DefaultProvider: args["default-provider"],
		DefaultRegion:   args["default-region"],
		// main's default: the Deployment's POD_NAMESPACE.
		OperatorNamespace:       namespace,
		ClusterName:             args["cluster-name"],
		Namespaces:              watched,
		MaxConcurrentReconciles: maxConcurrent,
		RestartMinInterval:      minInterval,
		DisableRestarts:         !restarts,
		// Unlike main, no pod webhook: the test makes no admission requests.
	}); err != nil {
		t.Fatal(err)
	}
	ready, err := webhook.AddCertRotator(mgr, webhook.CertOptions{
		Namespace:                namespace,
		SecretName:               args["webhook-cert-secret"],
		ServiceName:              args["webhook-service"],
		WebhookConfigurationName: args["webhook-configuration"],
		CertDir:                  certDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ready
}

// mountSecret does the kubelet's part: it writes the certificate Secret's
// keys into dir whenever they change, until ready closes or ctx ends.
func mountSecret(ctx context.Context, t *testing.T, name, dir string, ready <-chan struct{}) {
	var last []byte
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ready:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var s corev1.Secret
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s); err != nil {
			continue
		}
		crt := s.Data["tls.crt"]
		if len(crt) == 0 || bytes.Equal(crt, last) {
			continue
		}
		for k, v := range s.Data {
			if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
				t.Errorf("mounting %s: %v", k, err)
				return
			}
		}
		last = crt
	}
}

// managerArgs are the rendered Deployment's --flag=value arguments.
func managerArgs(t *testing.T, dep *appsv1.Deployment) map[string]string {
	t.Helper()
	args := map[string]string{}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		args[k] = v
	}
	for _, k := range []string{"watch-namespaces", "default-provider", "default-region", "max-concurrent-reconciles", "restart-on-rotation", "restart-min-interval", "webhook-cert-secret", "webhook-service", "webhook-configuration"} {
		if args[k] == "" {
			t.Fatalf("the chart passes no --%s", k)
		}
	}
	return args
}

// createForTest creates o as the admin and deletes it when the test ends.
func createForTest(t *testing.T, o client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), o); err != nil {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
	t.Cleanup(func() {
		if err := env.Client.Delete(context.Background(), o); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s %s: %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	})
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatal(fmt.Errorf("waiting for %s: %w", what, err))
	}
}
