// Package charts tests the Helm chart: lint, golden renderings, the values
// schema, and every rendered object against a real API server (server-side
// dry run), plus its agreement with what controller-gen generates.
package charts

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/stsbind/stsbind/internal/testrig/applytest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	release   = "stsbind"
	namespace = "stsbind-system"
	chart     = "charts/stsbind"
)

// cases are the value sets rendered: the defaults (self-managed
// certificates), cert-manager certificates, and every option changed.
var cases = map[string][]string{
	"default":      nil,
	"cert-manager": {"--set", "certificates.mode=cert-manager"},
	"options":      {"--values", "charts/testdata/options.values.yaml"},
}

// Kinds whose CRDs (cert-manager, prometheus-operator) are not installed in
// the test API server; they are checked structurally instead.
var foreignGroups = []string{"cert-manager.io", "monitoring.coreos.com"}

var env *testenv.Env

func TestMain(m *testing.M) {
	flag.Parse()
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

func render(t *testing.T, extra ...string) []byte {
	t.Helper()
	args := append([]string{"template", release, chart, "--namespace", namespace}, extra...)
	out, err := applytest.Run(applytest.Tool(t, "helm"), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderObjects(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := applytest.Decode(render(t, extra...))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestLint(t *testing.T) {
	helm := applytest.Tool(t, "helm")
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := applytest.Run(helm, append([]string{"lint", "--strict", chart, "--namespace", namespace}, values...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestGolden compares each rendering with testdata/<case>.golden.yaml;
// go test ./charts -update rewrites them.
func TestGolden(t *testing.T) {
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := render(t, values...)
			file := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (go test ./charts -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("helm template differs from %s (-want +got); review the change, then go test ./charts -update\n%s", file, cmp.Diff(string(want), string(got)))
			}
		})
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	helm := applytest.Tool(t, "helm")
	tests := map[string]struct {
		set      string
		wantText string
	}{
		"wrong type":             {set: "replicas=two", wantText: "/replicas"},
		"unknown key":            {set: "replica=2", wantText: "additional properties 'replica' not allowed"},
		"unknown nested key":     {set: "webhook.failurePolicyy=Fail", wantText: "additional properties 'failurePolicyy' not allowed"},
		"failurePolicy enum":     {set: "webhook.failurePolicy=Deny", wantText: "/webhook/failurePolicy"},
		"certificate mode enum":  {set: "certificates.mode=vault", wantText: "/certificates/mode"},
		"duration shape":         {set: "defaultProvider.timeout=30", wantText: "/defaultProvider/timeout"},
		"removed sts values":     {set: "sts.qps=5", wantText: "additional properties 'sts' not allowed"},
		"provider name":          {set: "defaultProvider.name=", wantText: "/defaultProvider/name"},
		"provider endpoint":      {set: "defaultProvider.endpoint=ftp://sts.example.com", wantText: "/defaultProvider/endpoint"},
		"provider role pattern":  {set: "defaultProvider.allowedRoleArns={arn:aws:s3:::bucket}", wantText: "/defaultProvider/allowedRoleArns/0"},
		"provider roles empty":   {set: "defaultProvider.allowedRoleArns=null", wantText: "missing property 'allowedRoleArns'"},
		"provider rate":          {set: "defaultProvider.rateLimit.qps=0", wantText: "/defaultProvider/rateLimit/qps"},
		"provider audience":      {set: "defaultProvider.audience=sts example", wantText: "/defaultProvider/audience"},
		"watchNamespaces string": {set: "watchNamespaces=team-a", wantText: "/watchNamespaces"},
		"alert for: Go duration": {set: "metrics.prometheusRule.notReadyFor=1.5h", wantText: "/metrics/prometheusRule/notReadyFor"},
		"alert minutes type":     {set: "metrics.prometheusRule.expiringWithinMinutes=10m", wantText: "/metrics/prometheusRule/expiringWithinMinutes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := applytest.Run(helm, "template", release, chart, "--namespace", namespace, "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s was accepted:\n%.300s", tc.set, out)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("--set %s: error does not mention %q:\n%v", tc.set, tc.wantText, err)
			}
		})
	}
}

// TestDryRun applies every rendered object to the envtest API server: CRDs for
// real, all the others with server-side dry run.
func TestDryRun(t *testing.T) {
	ctx := context.Background()
	a, err := applytest.NewApplier(env.Config, namespace)
	if err != nil {
		t.Fatal(err)
	}
	// The watched namespaces exist before the install: it puts Roles there.
	var options struct {
		WatchNamespaces []string `json:"watchNamespaces"`
	}
	readValues(t, "testdata/options.values.yaml", &options)
	for _, ns := range append(options.WatchNamespaces, namespace) {
		if err := a.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"default", "cert-manager", "options"} {
		t.Run(name, func(t *testing.T) {
			objs := renderObjects(t, append(cases[name], "--include-crds")...)
			res, errs := a.Install(ctx, objs, foreignGroups...)
			for _, err := range errs {
				t.Error(err)
			}
			for _, skipped := range res.Skipped {
				t.Logf("not applied: %s (its CRDs are not installed here; checked structurally)", skipped)
			}
			t.Logf("%s: API server accepted %d CRDs (applied) and %d of %d objects (server-side dry run)", name, res.CRDs, res.Accepted, res.Tried)
		})
	}
}

// TestDryRunCatchesErrors shows that the dry run above can fail: the API
// server refuses a rendered Deployment with an unknown field and a
// MutatingWebhookConfiguration without sideEffects.
func TestDryRunCatchesErrors(t *testing.T) {
	ctx := context.Background()
	a, err := applytest.NewApplier(env.Config, namespace)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	objs := renderObjects(t)
	dep := applytest.Find(objs, "Deployment", release).DeepCopy()
	if err := unstructured.SetNestedField(dep.Object, int64(1), "spec", "template", "spec", "replicaz"); err != nil {
		t.Fatal(err)
	}
	mwc := applytest.Find(objs, "MutatingWebhookConfiguration", release).DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	delete(hooks[0].(map[string]any), "sideEffects")
	if err := unstructured.SetNestedSlice(mwc.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	accepted, errs := a.DryRun(ctx, []*unstructured.Unstructured{dep, mwc})
	if accepted != 0 || len(errs) != 2 {
		t.Fatalf("accepted %d broken objects; errors: %v", accepted, errs)
	}
}

// TestServiceMonitor checks the ServiceMonitor against the metrics Service.
func TestServiceMonitor(t *testing.T) {
	objs := renderObjects(t, cases["options"]...)
	sm := applytest.Find(objs, "ServiceMonitor", release)
	svc := applytest.Find(objs, "Service", release+"-metrics")
	if sm == nil || svc == nil {
		t.Fatal("no ServiceMonitor or metrics Service rendered")
	}
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range selector {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the metrics Service has %q", k, v, svc.GetLabels()[k])
		}
	}
	if webhookSvc := applytest.Find(objs, "Service", release+"-webhook"); webhookSvc.GetLabels()["app.kubernetes.io/component"] == "metrics" {
		t.Error("the ServiceMonitor would also select the webhook Service")
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(endpoints) != 1 || len(ports) != 1 || endpoints[0].(map[string]any)["port"] != ports[0].(map[string]any)["name"] {
		t.Errorf("endpoints %v do not name the metrics port %v", endpoints, ports)
	}
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("serviceMonitor.labels not applied: %v", sm.GetLabels())
	}
}

// TestCertManagerObjects checks the objects the API server cannot: the
// Certificate's Secret is the one mounted, its DNS names are the webhook
// Service's, the Issuer exists and cert-manager injects that Certificate's CA.
func TestCertManagerObjects(t *testing.T) {
	objs := renderObjects(t, cases["cert-manager"]...)
	cert := applytest.Find(objs, "Certificate", "stsbind-webhook")
	issuer := applytest.Find(objs, "Issuer", "stsbind-selfsigned")
	if cert == nil || issuer == nil {
		t.Fatal("no Certificate stsbind-webhook or Issuer stsbind-selfsigned rendered")
	}
	for _, o := range []*unstructured.Unstructured{cert, issuer} {
		if o.GetAPIVersion() != "cert-manager.io/v1" || o.GetNamespace() != namespace {
			t.Errorf("%s %s: apiVersion %s namespace %q", o.GetKind(), o.GetName(), o.GetAPIVersion(), o.GetNamespace())
		}
	}
	if applytest.Find(objs, "Secret", "stsbind-webhook-cert") != nil {
		t.Error("cert-manager mode renders the self-managed Secret; cert-manager owns it")
	}
	secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
	issuerName, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
	issuerKind, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind")
	dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if issuerName != issuer.GetName() || issuerKind != "Issuer" {
		t.Errorf("issuerRef %s/%s, want Issuer/%s", issuerKind, issuerName, issuer.GetName())
	}
	if _, ok, _ := unstructured.NestedMap(issuer.Object, "spec", "selfSigned"); !ok {
		t.Error("the Issuer is not selfSigned")
	}
	dep := deployment(t, objs)
	if got := dep.Spec.Template.Spec.Volumes[0].Secret.SecretName; got != secretName {
		t.Errorf("the Deployment mounts Secret %q, the Certificate writes %q", got, secretName)
	}
	mwc := webhookConfiguration(t, objs)
	svc := mwc.Webhooks[0].ClientConfig.Service
	wantDNS := svc.Name + "." + svc.Namespace + ".svc"
	if !slices.Contains(dnsNames, wantDNS) {
		t.Errorf("dnsNames %v lack %s", dnsNames, wantDNS)
	}
	if got, want := mwc.Annotations["cert-manager.io/inject-ca-from"], namespace+"/"+cert.GetName(); got != want {
		t.Errorf("inject-ca-from %q, want %q", got, want)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--webhook-cert-mode=cert-manager") {
		t.Errorf("the manager is not told --webhook-cert-mode=cert-manager: %v", dep.Spec.Template.Spec.Containers[0].Args)
	}
}

func TestCRDsEqualConfig(t *testing.T) {
	root := testenv.RepoRoot()
	want, _ := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	got, _ := filepath.Glob(filepath.Join(root, "charts", "stsbind", "crds", "*.yaml"))
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("chart CRDs %v, config/crd/bases %v: run make manifests", got, want)
	}
	for _, w := range want {
		g := filepath.Join(root, "charts", "stsbind", "crds", filepath.Base(w))
		wb, err1 := os.ReadFile(w)
		gb, err2 := os.ReadFile(g)
		if err1 != nil || err2 != nil || !bytes.Equal(wb, gb) {
			t.Errorf("%s differs from %s (%v, %v): run make manifests", g, w, err1, err2)
		}
	}
}

// TestRBACEqualsGenerated checks the chart's manager RBAC against
// config/rbac/role.yaml, generated from the markers: every permission the
// markers generate is granted and nothing more, each where it belongs. The
// API server's discovery says which resources are cluster-scoped: those go
// into the ClusterRole; the namespaced ones into a Role in each watched
// namespace, or the ClusterRole when all namespaces are watched. The
// certificate rotator's rules exist only with self-managed certificates,
// writes by name: this release's webhook configuration and certificate
// Secret.
func TestRBACEqualsGenerated(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := applytest.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	namespaced := namespacedResources(t)
	const mwc = "admissionregistration.k8s.io/mutatingwebhookconfigurations"
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs := renderObjects(t, values...)
			var v struct {
				WatchNamespaces []string `json:"watchNamespaces"`
				Certificates    struct {
					Mode string `json:"mode"`
				} `json:"certificates"`
				RestartOnRotation struct {
					Enabled bool `json:"enabled"`
				} `json:"restartOnRotation"`
			}
			v.Certificates.Mode = "self-managed"
			v.RestartOnRotation.Enabled = true
			if name == "options" {
				readValues(t, "testdata/options.values.yaml", &v)
			} else if name == "cert-manager" {
				v.Certificates.Mode = "cert-manager"
			}
			selfManaged := v.Certificates.Mode == "self-managed"
			manager, cert := release+"-manager", release+"-webhook-cert"
			mwcName, secretName := release, release+"-webhook-cert"

			var want []permission
			for _, p := range permissions(rules(t, applytest.Find(generated, "ClusterRole", "manager-role")), "") {
				// A subresource's scope is its resource's.
				gr := p.Group + "/" + strings.SplitN(p.Resource, "/", 2)[0]
				isNamespaced, known := namespaced[gr]
				switch {
				case !known:
					t.Fatalf("the API server does not serve %s, which config/rbac/role.yaml grants", gr)
				case restartResources[gr] && !v.RestartOnRotation.Enabled:
					// restartOnRotation.enabled: false leaves them out.
				case gr == mwc:
					if selfManaged {
						want = append(want, p.at("ClusterRole "+cert, byName(p.Verb, mwcName)))
					}
				case !isNamespaced:
					want = append(want, p.at("ClusterRole "+manager, ""))
				case len(v.WatchNamespaces) == 0:
					want = append(want, p.at("ClusterRole "+manager, ""))
				default:
					for _, ns := range v.WatchNamespaces {
						want = append(want, p.at("Role "+ns+"/"+manager, ""))
					}
				}
			}
			if selfManaged {
				for _, p := range permissions(rules(t, applytest.Find(generated, "Role", "manager-role")), "") {
					want = append(want, p.at("Role "+namespace+"/"+cert, byName(p.Verb, secretName)))
				}
			}

			var got []permission
			for _, o := range objs {
				if (o.GetKind() != "ClusterRole" && o.GetKind() != "Role") || (o.GetName() != manager && o.GetName() != cert) {
					continue
				}
				place := o.GetKind() + " " + o.GetName()
				if o.GetKind() == "Role" {
					place = "Role " + o.GetNamespace() + "/" + o.GetName()
				}
				got = append(got, permissions(rules(t, o), place)...)
				if !boundToManager(objs, o, serviceAccountName(t, objs)) {
					t.Errorf("%s is not bound to the manager's ServiceAccount", place)
				}
			}
			sortPermissions(want)
			sortPermissions(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the chart's manager RBAC differs from config/rbac/role.yaml placed by scope (-want +chart; run make manifests, or place a new resource in templates/_helpers.tpl):\n%s", diff)
			}
		})
	}
}

// restartResources are what restart on rotation reads and patches.
var restartResources = map[string]bool{
	"apps/replicasets": true, "apps/deployments": true, "apps/statefulsets": true, "apps/daemonsets": true,
}

// permission is one verb on one resource as RBAC grants it: in which role
// (Place), and on which object (Name; empty for all).
type permission struct {
	Place, Group, Resource, Verb, Name string
}

func (p permission) at(place, name string) permission {
	p.Place, p.Name = place, name
	return p
}

// byName is the resourceNames entry of a write by name: RBAC cannot narrow a
// list or watch without a field selector, which the informers do not send.
func byName(verb, name string) string {
	if verb == "list" || verb == "watch" {
		return ""
	}
	return name
}

func permissions(rules []rbacv1.PolicyRule, place string) []permission {
	var out []permission
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, permission{Place: place, Group: g, Resource: res, Verb: v, Name: n})
					}
				}
			}
		}
	}
	return out
}

func sortPermissions(ps []permission) {
	slices.SortFunc(ps, func(a, b permission) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
}

// namespacedResources asks the API server which "group/resource" are
// namespaced.
func namespacedResources(t *testing.T) map[string]bool {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			out[gv.Group+"/"+r.Name] = r.Namespaced
		}
	}
	if !out["/secrets"] || out["/namespaces"] || !out["stsbind.dev/iamrolebindings"] || out["stsbind.dev/clusterstsproviders"] {
		t.Fatalf("discovery does not know the resources: %v", out)
	}
	return out
}

// boundToManager reports whether a RoleBinding or ClusterRoleBinding of the
// same kind, name and namespace binds role to the manager's ServiceAccount.
func boundToManager(objs []*unstructured.Unstructured, role *unstructured.Unstructured, sa string) bool {
	for _, o := range objs {
		if o.GetKind() != role.GetKind()+"Binding" || o.GetName() != role.GetName() || o.GetNamespace() != role.GetNamespace() {
			continue
		}
		var b rbacv1.RoleBinding // a ClusterRoleBinding decodes the same
		if err := applytest.Into(o, &b); err != nil {
			return false
		}
		if b.RoleRef.Kind == role.GetKind() && b.RoleRef.Name == role.GetName() &&
			slices.Contains(b.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: namespace}) {
			return true
		}
	}
	return false
}

func serviceAccountName(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	return deployment(t, objs).Spec.Template.Spec.ServiceAccountName
}

func readValues(t *testing.T, file string, into any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatal(err)
	}
}

func rules(t *testing.T, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	if o == nil {
		t.Fatal("role not found")
	}
	var r struct {
		Rules []rbacv1.PolicyRule `json:"rules"`
	}
	if err := applytest.Into(o, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rules
}

// TestWebhookMatchesGenerated compares the chart's webhook with the one
// controller-gen generates in config/webhook, and checks what only the
// install can set.
func TestWebhookMatchesGenerated(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.Unmarshal(raw, &generated); err != nil {
		t.Fatal(err)
	}
	if len(generated.Webhooks) != 1 {
		t.Fatalf("config/webhook has %d webhooks, the chart one", len(generated.Webhooks))
	}
	want := generated.Webhooks[0]
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs := renderObjects(t, values...)
			got := webhookConfiguration(t, objs).Webhooks[0]
			if got.Name != want.Name || *got.ClientConfig.Service.Path != *want.ClientConfig.Service.Path ||
				!reflect.DeepEqual(got.AdmissionReviewVersions, want.AdmissionReviewVersions) ||
				*got.SideEffects != *want.SideEffects || *got.ReinvocationPolicy != *want.ReinvocationPolicy {
				t.Errorf("webhook %s path %s differs from config/webhook: %s path %s", got.Name, *got.ClientConfig.Service.Path, want.Name, *want.ClientConfig.Service.Path)
			}
			for i := range got.Rules {
				got.Rules[i].Scope = nil // the chart states the default
			}
			if diff := cmp.Diff(want.Rules, got.Rules); diff != "" {
				t.Errorf("rules differ from config/webhook (-generated +chart):\n%s", diff)
			}
			excluded := false
			for _, e := range got.NamespaceSelector.MatchExpressions {
				if e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" &&
					slices.Contains(e.Values, "kube-system") && slices.Contains(e.Values, namespace) {
					excluded = true
				}
			}
			if !excluded {
				t.Errorf("namespaceSelector %+v does not exclude kube-system and %s", got.NamespaceSelector, namespace)
			}
			if svc := applytest.Find(objs, "Service", got.ClientConfig.Service.Name); svc == nil {
				t.Errorf("the webhook calls Service %s, which is not rendered", got.ClientConfig.Service.Name)
			}
		})
	}
}

// TestManagerFlags checks that the chart passes only flags main.go defines
// and that the names it passes are those of rendered objects.
func TestManagerFlags(t *testing.T) {
	flags, err := applytest.ManagerFlags()
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs := renderObjects(t, values...)
			args := deployment(t, objs).Spec.Template.Spec.Containers[0].Args
			if unknown := applytest.UnknownFlags(args, flags); len(unknown) > 0 {
				t.Errorf("flags main.go does not define: %v", unknown)
			}
			for flagName, kind := range map[string]string{
				"webhook-cert-secret":   "Secret",
				"webhook-service":       "Service",
				"webhook-configuration": "MutatingWebhookConfiguration",
				"default-provider":      "ClusterSTSProvider",
			} {
				for _, arg := range args {
					if v, ok := strings.CutPrefix(arg, "--"+flagName+"="); ok && applytest.Find(objs, kind, v) == nil {
						t.Errorf("--%s=%s names no rendered %s", flagName, v, kind)
					}
				}
			}
		})
	}
}

// TestAdmissionPolicyMatchesConfig: the chart ships the policy of
// config/admission-policy, bound with validationActions Deny, unless
// admissionPolicy.enabled is false.
func TestAdmissionPolicyMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "admission-policy", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want admissionregistrationv1.ValidatingAdmissionPolicy
	if err := yaml.UnmarshalStrict(raw, &want); err != nil {
		t.Fatal(err)
	}
	const name = release + "-require-serviceaccount-access"
	for caseName, values := range cases {
		t.Run(caseName, func(t *testing.T) {
			t.Parallel()
			objs := renderObjects(t, values...)
			if caseName == "options" { // admissionPolicy.enabled: false
				for _, o := range objs {
					if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
						t.Errorf("admissionPolicy.enabled=false renders %s %s", o.GetKind(), o.GetName())
					}
				}
				return
			}
			got := typed[admissionregistrationv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", name)
			if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
				t.Errorf("the chart's policy differs from config/admission-policy (-config +chart):\n%s", diff)
			}
			b := typed[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, objs, "ValidatingAdmissionPolicyBinding", name)
			if b.Spec.PolicyName != name || !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
				t.Errorf("binding %+v does not deny by policy %s", b.Spec, name)
			}
		})
	}
}

// typed finds the rendered object of kind and name and converts it.
func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	o := applytest.Find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s rendered", kind, name)
	}
	out := new(T)
	if err := applytest.Into(o, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func deployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	return typed[appsv1.Deployment](t, objs, "Deployment", release)
}

func webhookConfiguration(t *testing.T, objs []*unstructured.Unstructured) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	w := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", release)
	if len(w.Webhooks) != 1 {
		t.Fatalf("%d webhooks rendered, want 1", len(w.Webhooks))
	}
	return w
}
