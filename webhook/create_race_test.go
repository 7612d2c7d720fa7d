package webhook

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// The create race: a pod created right after its binding was created or
// changed must get what the API server holds, whatever the cache holds yet.

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
