package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// The pure admission benchmarks: one pod with one container and one Files
// binding (benchPod, benchBindings), no control plane. Each reports ns/op
// and, where valgrind is installed, instr/op: the instructions callgrind
// counts for one operation, which unlike time do not move with the load of
// the machine. The bindings and the Secret come from controller-runtime's
// fake client, which costs more per read than the manager's informer cache.

// workload is one operation of a benchmark, set up once.
type workload func(tb testing.TB) func()

var workloads = map[string]workload{
	"patch":                patchWorkload,
	"handler":              func(tb testing.TB) func() { return handlerWorkload(tb, false) },
	"http":                 func(tb testing.TB) func() { return httpWorkload(tb, false) },
	"typed-defaulter":      func(tb testing.TB) func() { return handlerWorkload(tb, true) },
	"typed-defaulter-http": func(tb testing.TB) func() { return httpWorkload(tb, true) },
}

func patchWorkload(tb testing.TB) func() {
	req := benchRequest(tb)
	var before corev1.Pod
	if err := decodePod(req.Object.Raw, &before); err != nil {
		tb.Fatal(err)
	}
	after := before.DeepCopy()
	mutatePod(after, benchBindings(1), fixtureOptions)
	return func() {
		if ops, err := podPatch(req.Object.Raw, &before, after); err != nil || len(ops) == 0 {
			tb.Fatal(err)
		}
	}
}

// benchWebhook is the pod webhook over the fake client holding the binding
// and its Secret; typed is the typed-defaulter wiring it replaced.
func benchWebhook(tb testing.TB, typed bool) interface {
	http.Handler
	admission.Handler
} {
	bs := benchBindings(1)
	bs[0].UID = "uid-role-1"
	cache := emptyCache(tb, &bs[0], ownedSecret(&bs[0]))
	d := &PodDefaulter{Cache: cache, APIReader: cache, Options: fixtureOptions}
	if typed {
		return admission.WithDefaulter(testenv.Scheme(), admission.Defaulter[*corev1.Pod](d))
	}
	return d.Webhook()
}

func handlerWorkload(tb testing.TB, typed bool) func() {
	wh := benchWebhook(tb, typed)
	req := benchRequest(tb)
	return func() {
		if r := wh.Handle(context.Background(), req); !r.Allowed || len(r.Patch) == 0 {
			tb.Fatalf("review not patched: %+v", r.Result)
		}
	}
}

func httpWorkload(tb testing.TB, typed bool) func() {
	wh := benchWebhook(tb, typed)
	req := benchRequest(tb)
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return func() {
		r := httptest.NewRequest(http.MethodPost, PodWebhookPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		wh.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"patch":`)) {
			tb.Fatalf("HTTP %d: %s", w.Code, w.Body)
		}
	}
}

// benchRequest is the review of benchPod as the API server sends it.
func benchRequest(tb testing.TB) admission.Request {
	tb.Helper()
	pod := benchPod()
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	raw, err := json.Marshal(pod)
	if err != nil {
		tb.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "00000000-0000-0000-0000-000000000001",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

// BenchmarkAdmission: the patch alone, the admission handler
// (decode, Default, patch) and the same behind HTTP, as the webhook server
// runs it; typed-defaulter* are controller-runtime's typed defaulter around
// the same Default, the wiring before podPatch.
func BenchmarkAdmission(b *testing.B) {
	for _, name := range []string{"patch", "handler", "http", "typed-defaulter", "typed-defaulter-http"} {
		b.Run(name, func(b *testing.B) {
			op := workloads[name](b)
			b.ReportAllocs()
			for b.Loop() {
				op()
			}
			if ir, ok := instructionsPerOp(b, name); ok {
				b.ReportMetric(ir, "instr/op")
			}
		})
	}
}

// callgrindEnv names the workload a child process runs under callgrind,
// callgrindOpsEnv how many operations it counts.
const (
	callgrindEnv    = "STSBIND_CALLGRIND_WORKLOAD"
	callgrindOpsEnv = "STSBIND_CALLGRIND_OPS"
)

// instrPerOp holds each workload's figure: it is the same for every -count.
var instrPerOp sync.Map

// instructionsPerOp runs this test binary again under callgrind, twice: once
// with 100 operations of the workload and once with 300, after the same
// warm-up. The difference of the two counts, over 200, is the operation's
// own, whatever the process does around it (start, set-up, exit), and needs
// no symbols (go test strips them). The garbage collector is off in the
// child (GOGC=off), so the figure is the operation's work including its
// allocations and repeats to within a few instructions; allocs/op says what
// the collector will have to do.
func instructionsPerOp(b *testing.B, name string) (float64, bool) {
	if v, ok := instrPerOp.Load(name); ok {
		return v.(float64), true
	}
	valgrind, err := exec.LookPath("valgrind")
	if err != nil {
		b.Log("valgrind not found: no instr/op")
		return 0, false
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	count := func(ops int) float64 {
		cmd := exec.Command(valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", self, "-test.run=^TestCallgrindWorkload$")
		// Go's asynchronous preemption signals trip callgrind's signal handling.
		cmd.Env = append(os.Environ(), callgrindEnv+"="+name, callgrindOpsEnv+"="+strconv.Itoa(ops),
			"GOGC=off", "GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1")
		log, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("callgrind: %v\n%s", err, log)
		}
		m := regexp.MustCompile(`Collected : (\d+)`).FindSubmatch(log)
		if m == nil {
			b.Fatalf("callgrind reported no count:\n%s", log)
		}
		n, _ := strconv.ParseFloat(string(m[1]), 64)
		return n
	}
	ir := (count(300) - count(100)) / 200
	instrPerOp.Store(name, ir)
	return ir, true
}

// TestCallgrindWorkload is the child's side of instructionsPerOp; it does
// nothing unless that function started it.
func TestCallgrindWorkload(t *testing.T) {
	name := os.Getenv(callgrindEnv)
	if name == "" {
		t.Skip("runs only under callgrind, started by a benchmark's instructionsPerOp")
	}
	w, ok := workloads[name]
	if !ok {
		t.Fatalf("%s=%q: no such workload", callgrindEnv, name)
	}
	n, err := strconv.Atoi(os.Getenv(callgrindOpsEnv))
	if err != nil {
		t.Fatalf("%s: %v", callgrindOpsEnv, err)
	}
	op := w(t)
	for range 50 + n {
		op()
	}
}
