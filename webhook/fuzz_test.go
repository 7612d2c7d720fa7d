package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// FuzzPodWebhook feeds the admission handler arbitrary pod bytes. It must never
// panic and always answer: allowed (with a patch that applies and that a
// second round would not extend) or, for bytes that are no pod, a 400. It
// answers as controller-runtime's typed defaulter, which diffs the whole pod,
// does around the same Default: allowed alike (but for bytes that are not
// JSON, which that decoder may read as YAML), and patches that give the same
// pod.
// `go test` runs the seed corpus; `go test -fuzz FuzzPodWebhook ./webhook` explores.
func FuzzPodWebhook(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	bindings := []client.Object{
		newBinding("team-a", "s3-reader", "app", stsbindv1.InjectionFiles),
		newBinding("team-a", "dynamo", "app", stsbindv1.InjectionEnv),
		newBinding("team-a", "default-role", "default", stsbindv1.InjectionFiles),
		newBinding("team-a", "endpoint", "sidecar", stsbindv1.InjectionEndpoint),
	}
	cache := emptyCache(f, bindings...)
	d := &PodDefaulter{Cache: cache, APIReader: cache, Options: fixtureOptions}
	wh := d.Webhook()
	typed := admission.WithDefaulter(testenv.Scheme(), admission.Defaulter[*corev1.Pod](d))
	var list stsbindv1.IAMRoleBindingList
	if err := cache.List(context.Background(), &list); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, raw []byte) {
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "fuzz",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "team-a",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		}}
		resp := wh.Handle(context.Background(), req)
		want := typed.Handle(context.Background(), req)
		// The typed defaulter's decoder also reads YAML ("#00" is an empty
		// YAML document); a review's object is JSON, and anything else is
		// a 400 here.
		yamlOnly := !resp.Allowed && resp.Result != nil && resp.Result.Code == http.StatusBadRequest && !json.Valid(raw)
		if resp.Allowed != want.Allowed && !yamlOnly {
			t.Fatalf("allowed = %v (%+v), the typed defaulter says %v (%+v)", resp.Allowed, resp.Result, want.Allowed, want.Result)
		}
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("denied without a decode error: %+v", resp.Result)
			}
			return
		}
		patched := applyPatch(t, raw, resp.Patch)
		// The API server decodes what the patch gives: compare as it would.
		typedPatch, err := json.Marshal(want.Patches)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(decodedPod(t, applyPatch(t, raw, typedPatch)), decodedPod(t, patched)); diff != "" {
			t.Fatalf("the patched pod differs from the typed defaulter's (-typed +ours):\n%s", diff)
		}
		if len(resp.Patch) == 0 {
			return
		}
		// Decoded as the API server does (case-sensitive field names), not
		// by encoding/json, which would read "serviCeACCountNAme" too.
		var pod corev1.Pod
		if err := decodePod(patched, &pod); err != nil {
			t.Fatalf("patched pod does not decode: %v", err)
		}
		again := pod.DeepCopy()
		mutatePod(again, list.Items, fixtureOptions)
		if !reflect.DeepEqual(&pod, again) {
			t.Fatal("a reinvocation would change the patched pod again")
		}
	})
}

// applyPatch applies a JSON patch to raw as the API server would.
func applyPatch(t *testing.T, raw, patch []byte) []byte {
	t.Helper()
	if len(patch) == 0 || string(patch) == "[]" || string(patch) == "null" {
		return raw
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("undecodable patch: %v", err)
	}
	patched, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch %s does not apply to the request: %v", patch, err)
	}
	return patched
}

func decodedPod(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := decodePod(raw, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

func fuzzSeeds() [][]byte {
	seeds := [][]byte{
		nil,
		[]byte(""),
		[]byte("null"),
		[]byte("{}"),
		[]byte("[]"),
		[]byte(`"pod"`),
		[]byte(`{"apiVersion":"v1","kind":"Pod"`),
		[]byte(`{"kind":"Pod","spec":{"containers":"app"}}`),
		[]byte(`{"kind":"Pod","spec":{"containers":[null,{"name":"app","env":[null]}],"volumes":[null]}}`),
		[]byte(`{"kind":"Pod","metadata":{"annotations":{"stsbind.dev/inject":"false"}},"spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`),
		[]byte(`{"kind":"Pod","metadata":{"annotations":{"stsbind.dev/default-binding":"nope"}},"spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`),
		[]byte(`{"kind":"Pod","metadata":{"annotations":null},"spec":{"serviceAccountName":"app","containers":[{"name":"app","env":[{"name":"AWS_REGION"}]}],"volumes":[{"name":"stsbind-s3-reader"},{"name":"stsbind-s3-reader-55ad1e1d","emptyDir":{}}]}}`),
		[]byte(`{"kind":"Pod","spec":{"containers":[{"name":"app","volumeMounts":[{"name":"x","mountPath":"/var/run/secrets/stsbind.dev/default-role"}]}]}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"app","initContainers":[{"name":"i"}],"containers":[]}}`),
		[]byte(`{"kind":"Pod","metadata":{"name":"p"},"spec":{"serviceAccountName":"sidecar","initContainers":[{"name":"i","resources":{}}],"containers":[{"name":"app","resources":{}}]}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"sidecar","initContainers":[{"name":"i"}],"containers":[{"name":"app"}]}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"app","containers":[{"name":"app","unknownField":1,"env":[{"name":"A","value":"1","also":"unknown"}]}],"volumes":[{"name":"v","emptyDir":{"sizeLimit":"0.5Gi"}}]}}`),
		[]byte(`{"kind":"Service","spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`),
		[]byte(`{"apiVersion":"apps/v1","kind":"Pod","spec":{"serviceAccountName":"app","containers":[{"name":"app"}]}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"` + strings.Repeat("a", 10000) + `","containers":[{"name":"app"}]}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"app\u0000\ud800","containers":[{"name":"app"}]}}`),
		[]byte(strings.Repeat("[", 100000)),
		[]byte(`{"kind":"Pod","metadata":` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + "}"),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":123}}`),
		[]byte(`{"kind":"Pod","spec":{"serviceAccountName":"app","containers":[{"name":"app"}],"containers":[{"name":"dup"}]}}`),
	}
	// A huge pod: many containers, each with env and mounts.
	huge := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{ServiceAccountName: "app"}}
	for i := range 500 {
		c := corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example/app:1"}
		for j := range 20 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("V%d", j), Value: strings.Repeat("x", 100)})
		}
		huge.Spec.Containers = append(huge.Spec.Containers, c)
		huge.Spec.Volumes = append(huge.Spec.Volumes, corev1.Volume{Name: fmt.Sprintf("v%d", i)})
	}
	raw, err := json.Marshal(huge)
	if err != nil {
		panic(err)
	}
	seeds = append(seeds, raw)
	// An ordinary pod, and one already injected (reinvocation).
	pod := benchPod()
	raw, _ = json.Marshal(pod)
	seeds = append(seeds, raw)
	var list stsbindv1.IAMRoleBindingList
	list.Items = append(list.Items, *newBinding("team-a", "s3-reader", "app", stsbindv1.InjectionFiles), *newBinding("team-a", "dynamo", "app", stsbindv1.InjectionEnv))
	mutatePod(pod, list.Items, fixtureOptions)
	raw, _ = json.Marshal(pod)
	return append(seeds, raw)
}
