package webhook

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// mutateWith is a Defaulter that applies mutatePod with fixed bindings, so
// that the typed defaulter and podHandler run the very same mutation.
type mutateWith []stsbindv1.IAMRoleBinding

func (m mutateWith) Default(_ context.Context, pod *corev1.Pod) error {
	mutatePod(pod, m, fixtureOptions)
	return nil
}

// reviewOf is the request the API server sends for pod: its JSON encoding.
func reviewOf(t *testing.T, pod *corev1.Pod) admission.Request {
	t.Helper()
	pod = pod.DeepCopy()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "fixture",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// canonical lists a patch's operations as JSON, sorted, so that two patches
// compare regardless of map order.
func canonical(t *testing.T, patch []byte) []string {
	t.Helper()
	var ops []json.RawMessage
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		out = append(out, string(op))
	}
	slices.Sort(out)
	return out
}

// TestPodPatchMatchesTypedDefaulter: on every fixture, the patch podPatch
// computes over the changed parts is the very patch controller-runtime's
// typed defaulter computes by diffing the whole marshalled pod (the one this
// webhook answered with before), operation for operation.
func TestPodPatchMatchesTypedDefaulter(t *testing.T) {
	t.Parallel()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	patched := 0
	for _, in := range inputs {
		pod, bindings := readFixture(t, in)
		req := reviewOf(t, pod)
		typed := admission.WithDefaulter(testenv.Scheme(), admission.Defaulter[*corev1.Pod](mutateWith(bindings)))
		want := typed.Handle(context.Background(), req)
		if !want.Allowed {
			t.Fatalf("%s: the typed defaulter denied the pod: %+v", in, want.Result)
		}
		if len(want.Patches) > 0 {
			patched++
		}
		t.Run(strings.TrimSuffix(filepath.Base(in), ".in.yaml"), func(t *testing.T) {
			t.Parallel()
			var before corev1.Pod
			if err := decodePod(req.Object.Raw, &before); err != nil {
				t.Fatal(err)
			}
			after := before.DeepCopy()
			mutatePod(after, bindings, fixtureOptions)
			got, ok, err := changedPartsPatch(&before, after)
			if err != nil || !ok {
				t.Fatalf("changedPartsPatch: ok %v, %v; want the changed parts diffed", ok, err)
			}
			// As the API server gets them: the typed defaulter's through
			// Operation.MarshalJSON, podPatch's through marshalPatch.
			wantPatch, err := json.Marshal(want.Patches)
			if err != nil {
				t.Fatal(err)
			}
			gotPatch, err := marshalPatch(got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(canonical(t, wantPatch), canonical(t, gotPatch)); diff != "" {
				t.Errorf("patch differs from the typed defaulter's (-typed +podPatch):\n%s", diff)
			}
		})
	}
	if patched < 10 {
		t.Fatalf("only %d fixtures change the pod: the comparison proves little", patched)
	}
}

// TestPodPatchFallsBackWhereTheBytesDifferInShape: a null or missing object
// decodes to an empty struct; the operations must then be computed against
// the review's bytes, as the typed defaulter does, or they would not apply.
func TestPodPatchFallsBackWhereTheBytesDifferInShape(t *testing.T) {
	t.Parallel()
	b := newBinding("team-a", "s3-reader", "app", stsbindv1.InjectionFiles)
	tests := map[string]string{
		"no metadata":         `{"kind":"Pod","spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`,
		"null metadata":       `{"kind":"Pod","metadata":null,"spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`,
		"null container":      `{"kind":"Pod","metadata":{"name":"p"},"spec":{"serviceAccountName":"app","containers":[null,{"name":"app"}]}}`,
		"null annotations":    `{"kind":"Pod","metadata":{"name":"p","annotations":null},"spec":{"serviceAccountName":"app","containers":[{"name":"app","env":null}]}}`,
		"unknown fields kept": `{"kind":"Pod","metadata":{"name":"p","future":1},"spec":{"serviceAccountName":"app","containers":[{"name":"app","future":{"a":1}}],"future":[1]}}`,
	}
	for name, raw := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var before corev1.Pod
			if err := decodePod([]byte(raw), &before); err != nil {
				t.Fatal(err)
			}
			after := before.DeepCopy()
			mutatePod(after, []stsbindv1.IAMRoleBinding{*b}, fixtureOptions)
			ops, err := podPatch([]byte(raw), &before, after)
			if err != nil {
				t.Fatal(err)
			}
			patch, err := marshalPatch(ops)
			if err != nil {
				t.Fatal(err)
			}
			patched := applyPatch(t, []byte(raw), patch)
			if diff := cmp.Diff(after, decodedPod(t, patched)); diff != "" {
				t.Errorf("patched pod differs from the mutated one (-mutated +patched):\n%s", diff)
			}
			if strings.Contains(raw, "future") && strings.Count(string(patched), "future") != strings.Count(raw, "future") {
				t.Errorf("the patch dropped fields this build does not know: %s", patched)
			}
		})
	}
}
