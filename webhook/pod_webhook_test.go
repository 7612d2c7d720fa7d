package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

func newNamespace(t testing.TB) string {
	t.Helper()
	needEnv(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "webhook-" + rand.String(8)}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

func newBinding(ns, name, sa string, mode stsbindv1.InjectionMode) *stsbindv1.IAMRoleBinding {
	return &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: sa,
			RoleARN:            "arn:aws:iam::123456789012:role/" + name,
			Region:             "eu-west-1",
			Injection:          stsbindv1.Injection{Mode: mode},
		},
	}
}

func newPod(ns, name, sa string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			InitContainers:     []corev1.Container{{Name: "init", Image: "registry.example/init:1"}},
			Containers:         []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
		},
	}
}

// injected is the part of a pod the webhook writes.
type injected struct {
	Annotations map[string]string
	Volumes     []corev1.Volume
	Env         [][]corev1.EnvVar
	Mounts      [][]corev1.VolumeMount
}

func injectedPart(p *corev1.Pod) injected {
	in := injected{Annotations: p.Annotations, Volumes: p.Spec.Volumes}
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		in.Env = append(in.Env, c.Env)
		in.Mounts = append(in.Mounts, c.VolumeMounts)
	}
	return in
}

// TestWebhookInjectsPodCreatedRightAfterBinding creates each binding and its
// pod back to back, with no wait, through the real API server, which calls
// the webhook over TLS; the stored pod must carry the credentials.
func TestWebhookInjectsPodCreatedRightAfterBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	tests := map[string]struct {
		sa   string // "" as envtest sends it: no ServiceAccount admission plugin
		mode stsbindv1.InjectionMode
	}{
		"empty serviceAccountName is default": {sa: "", mode: stsbindv1.InjectionFiles},
	}
	for i := range 8 {
		mode := stsbindv1.InjectionFiles
		if i%2 == 1 {
			mode = stsbindv1.InjectionEnv
		}
		tests[fmt.Sprintf("race %d %s", i, mode)] = struct {
			sa   string
			mode stsbindv1.InjectionMode
		}{sa: fmt.Sprintf("sa-%d", i), mode: mode}
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			bindingSA := tc.sa
			if bindingSA == "" {
				bindingSA = "default"
			}
			b := newBinding(ns, "role-"+bindingSA, bindingSA, tc.mode)
			pod := newPod(ns, "pod-"+bindingSA, tc.sa)
			want := pod.DeepCopy()
			if err := env.Client.Create(ctx, b); err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}

			var stored corev1.Pod
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
				t.Fatal(err)
			}
			mutatePod(want, []stsbindv1.IAMRoleBinding{*b}, fixtureOptions)
			if len(want.Spec.Containers[0].Env) == 0 {
				t.Fatal("the expected pod has no injection: the test is wrong")
			}
			if diff := cmp.Diff(injectedPart(want), injectedPart(&stored)); diff != "" {
				t.Errorf("stored pod (-want +got):\n%s", diff)
			}
		})
	}
}

// waitCached waits until the manager's informer has b at its current
// resourceVersion, so that what the test does next races a cache that is
// up to date but for that next write.
func waitCached(t *testing.T, b *stsbindv1.IAMRoleBinding) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var cached stsbindv1.IAMRoleBinding
		if err := mgr.GetCache().Get(context.Background(), client.ObjectKeyFromObject(b), &cached); err == nil && cached.ResourceVersion == b.ResourceVersion {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("IAMRoleBinding %s never reached the cache", b.Name)
		}
	}
}

// TestWebhookInjectsPodCreatedRightAfterChange: the ServiceAccount already
// has a binding, in the cache; a second binding, or a new mode, is written
// and the pod created back to back. The stored pod must carry what the API
// server held when the pod arrived, not what the cache still held. The
// informer often wins this race on envtest; TestLookupIgnoresAStaleCache
// pins the same guarantee with a cache that lags for certain.
func TestWebhookInjectsPodCreatedRightAfterChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	for i := range 16 {
		sa := fmt.Sprintf("sa-%d", i)
		first := newBinding(ns, "first-"+sa, sa, stsbindv1.InjectionFiles)
		if err := env.Client.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("second binding %d", i)
		if i%2 == 1 {
			name = fmt.Sprintf("mode Files to Env %d", i)
		}
		t.Run(name, func(t *testing.T) {
			waitCached(t, first)
			pod := newPod(ns, "pod-"+sa, sa)
			want := pod.DeepCopy()
			var bindings []stsbindv1.IAMRoleBinding
			if i%2 == 0 {
				second := newBinding(ns, "second-"+sa, sa, stsbindv1.InjectionEnv)
				if err := env.Client.Create(ctx, second); err != nil {
					t.Fatal(err)
				}
				bindings = []stsbindv1.IAMRoleBinding{*first, *second}
			} else {
				changed := first.DeepCopy()
				changed.Spec.Injection.Mode = stsbindv1.InjectionEnv
				if err := env.Client.Update(ctx, changed); err != nil {
					t.Fatal(err)
				}
				bindings = []stsbindv1.IAMRoleBinding{*changed}
			}
			if err := env.Client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}

			var stored corev1.Pod
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
				t.Fatal(err)
			}
			mutatePod(want, bindings, fixtureOptions)
			if diff := cmp.Diff(injectedPart(want), injectedPart(&stored)); diff != "" {
				t.Errorf("stored pod (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLookupIgnoresAStaleCache pins what the races above probe: whatever the
// cache holds, the pod gets the bindings the API server holds.
func TestLookupIgnoresAStaleCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	first := newBinding(ns, "first", "app", stsbindv1.InjectionFiles)
	if err := env.Client.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := newBinding(ns, "second", "app", stsbindv1.InjectionFiles)
	if err := env.Client.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	changed := first.DeepCopy()
	changed.Spec.Injection.Mode = stsbindv1.InjectionEnv
	if err := env.Client.Update(ctx, changed); err != nil {
		t.Fatal(err)
	}
	tests := map[string][]client.Object{
		"cache has no binding":              nil,
		"cache lacks the second binding":    {changed},
		"cache has the first's former mode": {first, second},
	}
	for name, cached := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := &PodDefaulter{Cache: emptyCache(t, cached...), APIReader: mgr.GetAPIReader(), Options: fixtureOptions}
			pod := newPod(ns, "app", "app")
			want := pod.DeepCopy()
			mutatePod(want, []stsbindv1.IAMRoleBinding{*changed, *second}, fixtureOptions)
			if err := d.Default(ctx, pod); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(injectedPart(want), injectedPart(pod)); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWebhookLeavesOtherServiceAccountsAlone: a binding for one ServiceAccount
// changes nothing in a pod of another in the same namespace.
func TestWebhookLeavesOtherServiceAccountsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	if err := env.Client.Create(ctx, newBinding(ns, "s3-reader", "app", stsbindv1.InjectionFiles)); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"other", ""} {
		pod := newPod(ns, "pod-"+rand.String(5), sa)
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		var stored corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(injectedPart(newPod(ns, pod.Name, sa)), injectedPart(&stored)); diff != "" {
			t.Errorf("pod of ServiceAccount %q was changed (-want +got):\n%s", sa, diff)
		}
	}
}

// TestLookupFallsBackToAPIServer pins the cache-miss path: with a cache that
// never has the binding, the live List still finds it.
func TestLookupFallsBackToAPIServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t)
	b := newBinding(ns, "s3-reader", "app", stsbindv1.InjectionFiles)
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	d := &PodDefaulter{Cache: emptyCache(t), APIReader: mgr.GetAPIReader(), Options: fixtureOptions}
	before := testutil.ToFloat64(liveLookups)
	pod := newPod(ns, "app", "app")
	if err := d.Default(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := pod.Annotations[stsbindv1.AnnotationDefaultBinding]; got != "s3-reader" {
		t.Errorf("default-binding annotation = %q, want s3-reader (pod not injected)", got)
	}
	if got := testutil.ToFloat64(liveLookups) - before; got < 1 {
		t.Errorf("live lookups grew by %v, want at least 1", got)
	}
}

func bindingIndex(o client.Object) []string {
	return []string{o.(*stsbindv1.IAMRoleBinding).Spec.ServiceAccountName}
}

func emptyCache(t testing.TB, objs ...client.Object) client.Reader {
	return fake.NewClientBuilder().WithScheme(testenv.Scheme()).
		WithIndex(&stsbindv1.IAMRoleBinding{}, index.ServiceAccountName, bindingIndex).
		WithObjects(objs...).Build()
}

// failingReader stands for a cache or API server that cannot answer.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("connection refused")
}

func (failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("connection refused")
}

func TestLookupFailurePolicy(t *testing.T) {
	tests := map[string]struct {
		policy    admissionregistrationv1.FailurePolicyType
		optOut    bool
		wantErr   bool
		wantEvent bool
	}{
		"ignore admits unchanged with an event": {policy: admissionregistrationv1.Ignore, wantEvent: true},
		"unset policy is ignore":                {policy: "", wantEvent: true},
		"fail denies":                           {policy: admissionregistrationv1.Fail, wantErr: true},
		"opted-out pod is never looked up":      {policy: admissionregistrationv1.Fail, optOut: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			d := &PodDefaulter{Cache: failingReader{}, APIReader: failingReader{}, Recorder: rec, FailurePolicy: tc.policy}
			pod := newPod("team-a", "app", "app")
			if tc.optOut {
				pod.Annotations = map[string]string{stsbindv1.AnnotationInject: "false"}
			}
			want := pod.DeepCopy()
			label := string(tc.policy)
			if label == "" {
				label = string(admissionregistrationv1.Ignore)
			}
			before := testutil.ToFloat64(lookupFailures.WithLabelValues(label))

			err := d.Default(context.Background(), pod)
			if tc.wantErr {
				if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), stsbindv1.AnnotationInject) || !strings.Contains(err.Error(), "team-a/app") {
					t.Errorf("Default() error = %v, want ServiceUnavailable naming the ServiceAccount and the opt-out annotation", err)
				}
			} else if err != nil {
				t.Errorf("Default() error = %v, want none", err)
			}
			if diff := cmp.Diff(want, pod); diff != "" {
				t.Errorf("pod changed (-want +got):\n%s", diff)
			}
			grew := testutil.ToFloat64(lookupFailures.WithLabelValues(label)) - before
			if wantGrowth := map[bool]float64{true: 0, false: 1}[tc.optOut]; grew != wantGrowth {
				t.Errorf("stsbind_webhook_lookup_failures_total{failure_policy=%q} grew by %v, want %v", label, grew, wantGrowth)
			}
			select {
			case e := <-rec.Events:
				if !tc.wantEvent {
					t.Errorf("unexpected event %q", e)
				} else if !strings.HasPrefix(e, "Warning "+ReasonInjectionSkipped) {
					t.Errorf("event = %q, want a Warning %s", e, ReasonInjectionSkipped)
				}
			default:
				if tc.wantEvent {
					t.Error("no event recorded")
				}
			}
		})
	}
}

func TestDefaultHonoursNamespaces(t *testing.T) {
	t.Parallel()
	b := newBinding("team-a", "s3-reader", "app", stsbindv1.InjectionFiles)
	b.UID = "uid-s3-reader"
	d := &PodDefaulter{Cache: emptyCache(t, ownedSecret(b)), APIReader: emptyCache(t, b), Namespaces: []string{"team-b"}}
	pod := newPod("team-a", "app", "app")
	if err := d.Default(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(newPod("team-a", "app", "app"), pod); diff != "" {
		t.Errorf("pod outside --watch-namespaces changed (-want +got):\n%s", diff)
	}
	d.Namespaces = append(d.Namespaces, "team-a")
	if err := d.Default(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if pod.Annotations[stsbindv1.AnnotationDefaultBinding] != "s3-reader" {
		t.Error("pod inside --watch-namespaces not injected")
	}
}

// BenchmarkLookup is the per-pod cost of finding the bindings: a List of
// the pod's namespace at the envtest API server on loopback, for a pod with
// a binding and one without (the same List). Run one at a time, so that no
// two share a List; under load they do (hack/bench's webhook benchmark).
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	ns := newNamespace(b)
	if err := env.Client.Create(ctx, newBinding(ns, "s3-reader", "app", stsbindv1.InjectionFiles)); err != nil {
		b.Fatal(err)
	}
	d := &PodDefaulter{Cache: mgr.GetCache(), APIReader: mgr.GetAPIReader()}
	for _, sa := range []string{"app", "no-binding"} {
		name := map[string]string{"app": "bound", "no-binding": "unbound"}[sa]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			lists := testutil.ToFloat64(liveLookups)
			for b.Loop() {
				if _, err := d.lookup(ctx, ns, sa); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((testutil.ToFloat64(liveLookups)-lists)/float64(b.N), "lists/op")
		})
	}
}
