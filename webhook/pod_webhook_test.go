package webhook

import (
	"context"
	"errors"
	"strings"
	"testing"

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
