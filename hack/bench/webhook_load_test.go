package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
	"github.com/stsbind/stsbind/webhook"
)

// dials counts the TCP connections the load generator opened: each one is a
// TLS handshake on both sides of a 2-core machine.
var dials atomic.Int64

// webhookTarget is the pod webhook served by a manager against envtest, as
// main.go serves it (HTTP/1.1 only, TLS 1.2+), and a client that trusts it.
type webhookTarget struct {
	url    string
	client *http.Client
	ns     string
	api    *apiCounter // the manager's requests to the API server
	stop   func()
}

func startWebhook(tb testing.TB) *webhookTarget {
	tb.Helper()
	env, err := testenv.Start(testenv.Options{Webhook: true})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wio := env.WebhookInstallOptions
	tlsOpts := []func(*tls.Config){func(c *tls.Config) {
		c.NextProtos = []string{"http/1.1"}
		c.MinVersion = tls.VersionTLS12
	}}
	// As main.go builds it: its client limits, the label-scoped Secret cache.
	api := newAPICounter()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.Wrap(api.wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: controllers.SecretCache()},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir, TLSOpts: tlsOpts,
		}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		tb.Fatal(err)
	}
	d := &webhook.PodDefaulter{
		Cache:         mgr.GetCache(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("stsbind-webhook"),
		FailurePolicy: admissionregistrationv1.Ignore,
		Options:       webhook.Options{DefaultRegion: "us-east-1"},
	}
	if err := d.SetupWithManager(mgr); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			tb.Error("manager stopped:", err)
		}
	}()

	// One namespace: five bindings, one of them for ServiceAccount "app",
	// each with the Secret the controller would have written, so that the
	// webhook's ownership check is answered by the cache.
	ns := "bench-webhook"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		tb.Fatal(err)
	}
	for i := range 5 {
		sa := fmt.Sprintf("other-%d", i)
		if i == 0 {
			sa = "app"
		}
		b := &stsbindv1.IAMRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("binding-%d", i)},
			Spec: stsbindv1.IAMRoleBindingSpec{
				ServiceAccountName: sa,
				RoleARN:            "arn:aws:iam::123456789012:role/bench",
				Region:             "eu-west-1",
			},
		}
		if err := env.Client.Create(ctx, b); err != nil {
			tb.Fatal(err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: b.SecretNameOrDefault(),
				Labels:          map[string]string{stsbindv1.LabelManagedBy: stsbindv1.LabelManagedByValue, stsbindv1.LabelBinding: b.Name},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(b, stsbindv1.GroupVersion.WithKind("IAMRoleBinding"))},
			},
			Type: stsbindv1.SecretType,
		}
		if err := env.Client.Create(ctx, secret); err != nil {
			tb.Fatal(err)
		}
	}
	// The informer has the bindings and the server serves before the load starts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list stsbindv1.IAMRoleBindingList
		var secrets corev1.SecretList
		err := mgr.GetCache().List(ctx, &list, client.InNamespace(ns), client.MatchingFields{index.ServiceAccountName: "app"})
		if err == nil {
			err = mgr.GetCache().List(ctx, &secrets, client.InNamespace(ns))
		}
		if err == nil && len(list.Items) == 1 && len(secrets.Items) == 5 && mgr.GetWebhookServer().StartedChecker()(&http.Request{}) == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("cache or webhook server not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(wio.LocalServingCAData)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     time.Minute,
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dialer.DialContext(ctx, network, addr)
	}
	return &webhookTarget{
		url:    "https://" + net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort)) + "/mutate--v1-pod",
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		ns:     ns,
		api:    api,
		stop: func() {
			tr.CloseIdleConnections()
			cancel()
			<-done
			_ = env.Stop()
		},
	}
}

// review is an AdmissionReview for a new pod running as ServiceAccount sa,
// shaped as the API server sends it.
func review(tb testing.TB, ns, sa string) []byte {
	tb.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "app-", Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.example/app:1",
				Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}},
			}},
		},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "00000000-0000-0000-0000-000000000001",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// reviews returns n reviews, for ServiceAccount sa alone or sa-0..sa-(n-1).
func reviews(tb testing.TB, ns, sa string, n int) [][]byte {
	if n <= 1 {
		return [][]byte{review(tb, ns, sa)}
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = review(tb, ns, fmt.Sprintf("%s-%d", sa, i))
	}
	return out
}

// loadResult is one open-loop run.
type loadResult struct {
	sent, errs, dropped int
	p50, p99, max       time.Duration
	achieved            float64 // completed reviews per second
	firstErr            string
}

// runLoad posts the bodies in turn at a fixed rate for d, open loop: request i is due at
// start+i/rate whether or not earlier ones have returned, and its latency
// counts from that due time, so a stalled server cannot hide queueing by
// slowing the generator down. At most maxInFlight requests are outstanding;
// a request due beyond that is dropped and counted as an error. check
// decides whether an answer is right.
func runLoad(c *http.Client, url string, bodies [][]byte, rate float64, d time.Duration, check func([]byte) error) loadResult {
	const maxInFlight = 1024
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		errs     atomic.Int64
		dropped  int
		errOnce  sync.Once
		firstErr string
	)
	fail := func(msg string) {
		errs.Add(1)
		errOnce.Do(func() { firstErr = msg })
	}
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if inFlight.Load() >= maxInFlight {
			dropped++
			lat[i] = -1
			continue
		}
		inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			resp, err := c.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
			if err != nil {
				lat[i] = time.Since(due)
				fail(err.Error())
				return
			}
			out, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(due)
			switch {
			case err != nil:
				fail(err.Error())
			case resp.StatusCode != http.StatusOK:
				fail(fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, out))
			default:
				if err := check(out); err != nil {
					fail(err.Error())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := slices.DeleteFunc(lat, func(l time.Duration) bool { return l < 0 })
	slices.Sort(done)
	r := loadResult{sent: n, errs: int(errs.Load()) + dropped, dropped: dropped, firstErr: firstErr}
	if len(done) > 0 {
		r.p50 = done[len(done)/2]
		r.p99 = done[min(len(done)-1, len(done)*99/100)]
		r.max = done[len(done)-1]
		r.achieved = float64(len(done)) / elapsed.Seconds()
	}
	return r
}

// checkReview returns a check that the answer allows the pod and patches it
// (wantPatch) or leaves it alone.
func checkReview(wantPatch bool) func([]byte) error {
	return func(out []byte) error {
		var rv admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &rv); err != nil {
			return fmt.Errorf("decoding the review: %w", err)
		}
		switch {
		case rv.Response == nil || !rv.Response.Allowed:
			return fmt.Errorf("pod not allowed: %.200s", out)
		case wantPatch && len(rv.Response.Patch) == 0:
			return fmt.Errorf("no patch for a pod with a binding")
		case !wantPatch && len(rv.Response.Patch) != 0:
			return fmt.Errorf("patch for a pod without a binding: %.200s", rv.Response.Patch)
		}
		return nil
	}
}

// Every pod, with a binding or without, gets its bindings from a List of its
// namespace that began after its review arrived, shared by the pods that
// arrived while the previous List ran.
var webhookCases = []struct {
	name, sa  string
	sas       int // when > 1, pods rotate over this many ServiceAccounts sa-0, sa-1, ...
	wantPatch bool
}{
	// A pod whose ServiceAccount has a binding.
	{"match", "app", 1, true},
	// A pod whose ServiceAccount has none.
	{"no-binding", "nobody", 1, false},
	// The same, each pod with another ServiceAccount, as pods of many
	// workloads are.
	{"no-binding-distinct-sa", "nobody", 1000, false},
}

// BenchmarkWebhookHTTPS drives the admission endpoint at a fixed rate
// (STSBIND_BENCH_RATE, default 1,000/s) for a bounded time
// (STSBIND_BENCH_DURATION, default 10s) when STSBIND_BENCH_SCALE is set,
// else at 200/s for 1s. b.N is ignored: one run is one load; use -benchtime=1x.
func BenchmarkWebhookHTTPS(b *testing.B) {
	rate, d := 200.0, time.Second
	if scale(b) > 0 {
		rate = envFloat(b, "STSBIND_BENCH_RATE", 1000)
		d = envDuration(b, "STSBIND_BENCH_DURATION", 10*time.Second)
	}
	t := startWebhook(b)
	defer t.stop()
	for _, tc := range webhookCases {
		b.Run(tc.name, func(b *testing.B) {
			body := reviews(b, t.ns, tc.sa, tc.sas)
			// Warm-up: connections, TLS sessions, first allocations. Not measured.
			runLoad(t.client, t.url, body, rate, min(d, time.Second), checkReview(tc.wantPatch))
			var r loadResult
			dials0 := dials.Load()
			t.api.snapshot()
			for b.Loop() {
				r = runLoad(t.client, t.url, body, rate, d, checkReview(tc.wantPatch))
			}
			reportLoad(b, r, dials.Load()-dials0)
			reportAPI(b, t.api.snapshot(), r.sent)
		})
	}
	// The same load against an HTTPS server that answers a fixed body: what
	// this machine's loopback, TLS and scheduler cost before any webhook work.
	b.Run("baseline-static-https", func(b *testing.B) {
		answer := []byte(`{"response":{"allowed":true}}`)
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = w.Write(answer)
		}))
		defer srv.Close()
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 512}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		body := [][]byte{review(b, t.ns, "app")}
		ok := func([]byte) error { return nil }
		runLoad(c, srv.URL, body, rate, min(d, time.Second), ok)
		var r loadResult
		for b.Loop() {
			r = runLoad(c, srv.URL, body, rate, d, ok)
		}
		reportLoad(b, r, -1)
	})
}

func reportLoad(b *testing.B, r loadResult, conns int64) {
	if r.firstErr != "" {
		b.Logf("first error: %s", r.firstErr)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(r.p50.Microseconds()), "p50-us")
	b.ReportMetric(float64(r.p99.Microseconds()), "p99-us")
	b.ReportMetric(float64(r.max.Microseconds()), "max-us")
	b.ReportMetric(float64(r.errs), "errors")
	if conns >= 0 {
		b.ReportMetric(float64(conns), "conns")
	}
	b.ReportMetric(float64(r.sent), "reviews")
	b.ReportMetric(r.achieved, "reviews/s")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
}

// reportAPI reports the API requests the webhook sent during a load, per
// review: the Lists of bindings, and everything else (Secret reads, events).
func reportAPI(b *testing.B, counts map[string]int, reviews int) {
	lists, other := 0, 0
	for k, n := range counts {
		if k == "GET iamrolebindings" {
			lists += n
		} else if !strings.HasPrefix(k, "WATCH ") {
			other += n
		}
	}
	b.ReportMetric(float64(lists)/float64(reviews), "binding-lists/review")
	b.ReportMetric(float64(other)/float64(reviews), "other-api-requests/review")
}

// TestWebhookLoadSmoke runs the load generator briefly and checks every
// answer: it keeps the harness working, it times nothing.
func TestWebhookLoadSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	t.Parallel()
	tgt := startWebhook(t)
	defer tgt.stop()
	for _, tc := range webhookCases {
		tgt.api.snapshot()
		r := runLoad(tgt.client, tgt.url, reviews(t, tgt.ns, tc.sa, tc.sas), 100, time.Second, checkReview(tc.wantPatch))
		if r.errs != 0 || r.sent != 100 {
			t.Errorf("%s: %d of %d reviews failed: %s", tc.name, r.errs, r.sent, r.firstErr)
		}
		// Each review waits for a List that began after it arrived, and
		// Lists are shared, never more than one per review; the Secrets
		// are in the cache.
		counts := tgt.api.snapshot()
		if n := counts["GET iamrolebindings"]; n == 0 || n > r.sent {
			t.Errorf("%s: %d binding Lists for %d reviews, want 1 to %d", tc.name, n, r.sent, r.sent)
		}
		if n := counts["GET secrets"]; n != 0 {
			t.Errorf("%s: %d Secret reads from the API server, want 0 (all in the cache)", tc.name, n)
		}
	}
}
