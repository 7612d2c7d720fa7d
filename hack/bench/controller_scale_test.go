package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// Defaults of main.go's flags. The benchmark runs the controller the way the
// binary does unless STSBIND_BENCH_* says otherwise.
const (
	defaultSTSQPS            = 100  // a ClusterSTSProvider's rateLimit.qps
	defaultSTSBurst          = 200  // a ClusterSTSProvider's rateLimit.burst
	defaultKubeQPS           = 500  // --kube-api-qps
	defaultKubeBurst         = 1000 // --kube-api-burst
	defaultMaxConcurrentRecs = 16   // --max-concurrent-reconciles
)

// benchProvider is the ClusterSTSProvider of every benchmark binding.
const benchProvider = "bench"

// scaleConfig is one controller scale run.
type scaleConfig struct {
	N                  int
	STSLatency         time.Duration
	Lifetime           time.Duration // of the credentials the fake STS issues
	STSQPS             float64
	STSBurst           int
	KubeQPS            float32
	KubeBurst          int
	MaxConcurrentRecon int
}

func configFromEnv(tb testing.TB, n int) scaleConfig {
	c := scaleConfig{
		N:                  n,
		STSLatency:         envDuration(tb, "STSBIND_BENCH_STS_LATENCY", 20*time.Millisecond),
		STSQPS:             envFloat(tb, "STSBIND_BENCH_STS_QPS", defaultSTSQPS),
		STSBurst:           int(envFloat(tb, "STSBIND_BENCH_STS_BURST", defaultSTSBurst)),
		KubeQPS:            float32(envFloat(tb, "STSBIND_BENCH_KUBE_QPS", defaultKubeQPS)),
		KubeBurst:          int(envFloat(tb, "STSBIND_BENCH_KUBE_BURST", defaultKubeBurst)),
		MaxConcurrentRecon: int(envFloat(tb, "STSBIND_BENCH_CONCURRENCY", defaultMaxConcurrentRecs)),
	}
	// The refresh cycle must start after the first issue and the restart are
	// over: it starts about two thirds of a lifetime after each issue.
	c.Lifetime = envDuration(tb, "STSBIND_BENCH_LIFETIME", max(45*time.Second, time.Duration(n)*30*time.Millisecond))
	return c
}

// scaleResult holds the figures of the three phases.
type scaleResult struct {
	create time.Duration // creating the ServiceAccounts and bindings (harness)

	// (a) first issue
	readyIn         time.Duration
	stsCalls        int
	identityCalls   int
	api             map[string]int
	heapAfterGC     uint64
	rssBeforeCtrl   int64
	rssAfterIssue   int64
	stsBound        time.Duration // the STS rate limit alone would take this long
	readyVerifiedOK bool

	// (b) restart with valid Secrets
	rssRestart          int64
	restartReconciledIn time.Duration
	restartSTSCalls     int
	restartAPI          map[string]int

	// (c) one refresh cycle
	refreshSpan         time.Duration // first to last refresh call
	refreshCallsMin     int           // per binding
	refreshCallsMax     int
	refreshSecretWrites int
	refreshAPI          map[string]int
	refreshEarly        int // refresh calls seen before the restart was over

	rssPeak int64
}

// tracker sees, through the reconciler's client, each binding become Ready
// and each binding's Secret read (the last step of a reconcile that keeps
// the credentials).
type tracker struct {
	mu         sync.Mutex
	ready      map[types.NamespacedName]bool
	secretRead map[types.NamespacedName]bool
	nReady     atomic.Int64
	nRead      atomic.Int64
}

func newTracker() *tracker {
	return &tracker{ready: map[types.NamespacedName]bool{}, secretRead: map[types.NamespacedName]bool{}}
}

func (t *tracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready, t.secretRead = map[types.NamespacedName]bool{}, map[types.NamespacedName]bool{}
	t.nReady.Store(0)
	t.nRead.Store(0)
}

func (t *tracker) mark(m map[types.NamespacedName]bool, n *atomic.Int64, key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !m[key] {
		m[key] = true
		n.Add(1)
	}
}

type trackingClient struct {
	client.Client
	t *tracker
}

func (c trackingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, key, obj, opts...)
	if _, ok := obj.(*corev1.Secret); ok && err == nil {
		// The bindings of this harness use the default Secret name: the
		// binding's own.
		c.t.mark(c.t.secretRead, &c.t.nRead, key)
	}
	return err
}

func (c trackingClient) Status() client.SubResourceWriter {
	return trackingStatus{SubResourceWriter: c.Client.Status(), t: c.t}
}

type trackingStatus struct {
	client.SubResourceWriter
	t *tracker
}

func (s trackingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	err := s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	if b, ok := obj.(*stsbindv1.IAMRoleBinding); ok && err == nil && meta.IsStatusConditionTrue(b.Status.Conditions, stsbindv1.ConditionReady) {
		s.t.mark(s.t.ready, &s.t.nReady, client.ObjectKeyFromObject(b))
	}
	return err
}

// scaleRun is the control plane, fake STS and bindings of one run.
type scaleRun struct {
	tb      testing.TB
	cfg     scaleConfig
	env     *testenv.Env
	sts     *ststest.Server
	api     *apiCounter
	tracker *tracker
}

func (s *scaleRun) namespace(i int) string { return fmt.Sprintf("bench-%03d", i%max(1, s.cfg.N/100)) }

// populate creates the namespaces, one ServiceAccount and one binding per
// index (each with its own role, so STS calls count per binding), with
// concurrent clients.
func (s *scaleRun) populate(ctx context.Context) {
	cfg := rest.CopyConfig(s.env.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.New(cfg, client.Options{Scheme: s.env.Scheme})
	if err != nil {
		s.tb.Fatal(err)
	}
	for i := range max(1, s.cfg.N/100) {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace(i)}}); err != nil {
			s.tb.Fatal(err)
		}
	}
	if err := c.Create(ctx, &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: benchProvider},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Endpoint:          s.sts.URL,
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/*"},
			RateLimit:         stsbindv1.RateLimit{QPS: int32(s.cfg.STSQPS), Burst: int32(s.cfg.STSBurst)},
		},
	}); err != nil {
		s.tb.Fatal(err)
	}
	const workers = 32
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		firstErr atomic.Pointer[error]
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= s.cfg.N || firstErr.Load() != nil {
					return
				}
				ns, name := s.namespace(i), fmt.Sprintf("b-%05d", i)
				objs := []client.Object{
					&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
					&stsbindv1.IAMRoleBinding{
						ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
						Spec: stsbindv1.IAMRoleBindingSpec{
							ServiceAccountName: name,
							RoleARN:            "arn:aws:iam::123456789012:role/" + name,
						},
					},
				}
				for _, o := range objs {
					if err := c.Create(ctx, o); err != nil {
						err = fmt.Errorf("creating %T %s/%s: %w", o, ns, name, err)
						firstErr.CompareAndSwap(nil, &err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		s.tb.Fatal(*p)
	}
}

// startManager runs the credential controller as main.go builds it (label
// scoped Secret cache, the configured client QPS, STS limits and
// concurrency), with its API requests counted and its client tracked.
func (s *scaleRun) startManager(ctx context.Context, restart bool) (stopped <-chan struct{}) {
	cfg := rest.CopyConfig(s.env.Config)
	cfg.QPS, cfg.Burst = s.cfg.KubeQPS, s.cfg.KubeBurst
	cfg.Wrap(s.api.wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 s.env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: controllers.SecretCache(),
				&corev1.Pod{}:    controllers.PodCache(),
			},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	})
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		s.tb.Fatal(err)
	}
	if err := index.SetupProviders(ctx, mgr.GetFieldIndexer(), benchProvider); err != nil {
		s.tb.Fatal(err)
	}
	r := &controllers.IAMRoleBindingReconciler{
		Client:                  trackingClient{Client: mgr.GetClient(), t: s.tracker},
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("stsbind"),
		STS:                     stsclient.New(stsclient.Options{}),
		DefaultProvider:         benchProvider,
		DefaultRegion:           "us-east-1",
		MaxConcurrentReconciles: s.cfg.MaxConcurrentRecon,
		SkipNameValidation:      restart,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		s.tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			s.tb.Error("manager stopped:", err)
		}
	}()
	return done
}

// waitFor polls n until it reaches want, failing after timeout.
func (s *scaleRun) waitFor(what string, timeout time.Duration, n func() int, want int) {
	deadline := time.Now().Add(timeout)
	for n() < want {
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: %d of %d after %s", what, n(), want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countReady lists every binding from the API server, a page at a time.
func (s *scaleRun) countReady(ctx context.Context) int {
	n := 0
	cont := ""
	for {
		var list stsbindv1.IAMRoleBindingList
		if err := s.env.Client.List(ctx, &list, client.Limit(1000), client.Continue(cont)); err != nil {
			s.tb.Fatal(err)
		}
		for _, b := range list.Items {
			if meta.IsStatusConditionTrue(b.Status.Conditions, stsbindv1.ConditionReady) {
				n++
			}
		}
		if cont = list.Continue; cont == "" {
			return n
		}
	}
}

// settle lets the last events, Secret-triggered reconciles and status writes
// of a phase land before its API requests are counted.
const settle = 2 * time.Second

func runScale(tb testing.TB, cfg scaleConfig) scaleResult {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	fake := ststest.NewServer()
	defer fake.Close()
	fake.SetLatency(cfg.STSLatency)
	fake.SetLifetime("", cfg.Lifetime)
	s := &scaleRun{tb: tb, cfg: cfg, env: env, sts: fake, api: newAPICounter(), tracker: newTracker()}
	ctx := context.Background()
	var res scaleResult

	start := time.Now()
	s.populate(ctx)
	res.create = time.Since(start)
	res.rssBeforeCtrl = resetPeakRSS()
	if cfg.STSQPS > 0 {
		res.stsBound = time.Duration(float64(max(0, cfg.N-cfg.STSBurst)) / cfg.STSQPS * float64(time.Second))
	}

	// (a) Every binding gets its first credentials.
	ctx1, cancel1 := context.WithCancel(ctx)
	start = time.Now()
	stopped1 := s.startManager(ctx1, false)
	s.waitFor("bindings Ready", 10*time.Minute, func() int { return int(s.tracker.nReady.Load()) }, cfg.N)
	res.readyIn = time.Since(start)
	time.Sleep(settle)
	// Credential calls; the GetCallerIdentity check of new credentials is
	// counted apart (one per new binding, none on refresh or restart).
	res.stsCalls = len(fake.OperationCalls(ststest.OpAssumeRoleWithWebIdentity))
	res.identityCalls = len(fake.OperationCalls(ststest.OpGetCallerIdentity))
	res.api = s.api.snapshot()
	res.readyVerifiedOK = s.countReady(ctx) == cfg.N
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.heapAfterGC = ms.HeapAlloc
	if path := os.Getenv("STSBIND_BENCH_HEAP_PROFILE"); path != "" {
		writeHeapProfile(tb, path)
	}
	res.rssAfterIssue = peakRSS()

	// (b) A new manager over Secrets that are all still valid.
	cancel1()
	<-stopped1
	// A restarted controller is a new process: leave the first manager's
	// memory out of the restart's peak.
	resetPeakRSS()
	s.tracker.reset()
	s.api.snapshot()
	callsBefore := fake.CallCount("")
	ctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	start = time.Now()
	stopped2 := s.startManager(ctx2, true)
	defer func() { cancel2(); <-stopped2 }()
	s.waitFor("bindings reconciled after the restart", 5*time.Minute, func() int { return int(s.tracker.nRead.Load()) }, cfg.N)
	res.restartReconciledIn = time.Since(start)
	restartOver := time.Now()
	time.Sleep(settle)
	res.rssRestart = peakRSS()
	res.restartSTSCalls = fake.CallCount("") - callsBefore
	res.restartAPI = s.api.snapshot()

	// (c) The refresh cycle: each binding's credentials come due once.
	callsBefore = fake.CallCount("")
	s.waitFor("bindings refreshed", cfg.Lifetime+5*time.Minute, func() int {
		return len(perRole(fake.Calls("")[callsBefore:]))
	}, cfg.N)
	time.Sleep(settle)
	refresh := fake.Calls("")[callsBefore:]
	res.refreshAPI = s.api.snapshot()
	res.refreshSecretWrites = writes(res.refreshAPI, "secrets")
	counts := perRole(refresh)
	res.refreshCallsMin, res.refreshCallsMax = cfg.N, 0
	for _, n := range counts {
		res.refreshCallsMin = min(res.refreshCallsMin, n)
		res.refreshCallsMax = max(res.refreshCallsMax, n)
	}
	if len(counts) < cfg.N {
		res.refreshCallsMin = 0
	}
	sort.Slice(refresh, func(i, j int) bool { return refresh[i].Time.Before(refresh[j].Time) })
	if len(refresh) > 0 {
		res.refreshSpan = refresh[len(refresh)-1].Time.Sub(refresh[0].Time)
		for _, c := range refresh {
			if c.Time.Before(restartOver) {
				res.refreshEarly++
			}
		}
	}
	res.rssPeak = peakRSS()
	return res
}

// writeHeapProfile saves the live heap after the first issue, for
// `go tool pprof -sample_index=inuse_space`.
func writeHeapProfile(tb testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}

func perRole(calls []ststest.Call) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		m[c.RoleARN]++
	}
	return m
}

// BenchmarkControllerScale creates STSBIND_BENCH_SCALE bindings (20 without
// it) against an STS answering in 20ms, and measures (a) the first issue,
// (b) a controller restart over valid Secrets, (c) one refresh cycle. b.N is
// ignored: one run is the whole scenario; use -benchtime=1x. Peak RSS is the
// test process's (controller, fake STS and harness together).
func BenchmarkControllerScale(b *testing.B) {
	n := scale(b)
	if n == 0 {
		n = 20
	}
	cfg := configFromEnv(b, n)
	name := fmt.Sprintf("bindings=%d", n)
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		name += fmt.Sprintf("/gomemlimit=%dMiB", limit>>20)
	}
	b.Run(name, func(b *testing.B) {
		var r scaleResult
		for b.Loop() {
			r = runScale(b, cfg)
		}
		b.Logf("config: %+v", cfg)
		b.Logf("created in %s; api (a) %v", r.create.Round(time.Millisecond), r.api)
		b.Logf("api (b) %v", r.restartAPI)
		b.Logf("api (c) %v", r.refreshAPI)
		if !r.readyVerifiedOK {
			b.Errorf("the API server does not show all %d bindings Ready", n)
		}
		if r.refreshEarly > 0 {
			b.Logf("%d refresh calls started before the restart was over: raise STSBIND_BENCH_LIFETIME", r.refreshEarly)
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(r.readyIn.Seconds(), "ready-s")
		b.ReportMetric(float64(r.stsCalls)/float64(n), "sts-calls/binding")
		b.ReportMetric(float64(r.identityCalls)/float64(n), "identity-calls/binding")
		b.ReportMetric(float64(writes(r.api, ""))/float64(n), "api-writes/binding")
		b.ReportMetric(float64(apiReads(r.api))/float64(n), "api-reads/binding")
		b.ReportMetric(r.stsBound.Seconds(), "sts-limit-bound-s")
		b.ReportMetric(cfg.STSQPS, "sts-qps")
		b.ReportMetric(float64(cfg.STSBurst), "sts-burst")
		b.ReportMetric(float64(cfg.KubeQPS), "kube-qps")
		b.ReportMetric(float64(cfg.MaxConcurrentRecon), "concurrency")
		b.ReportMetric(float64(r.rssBeforeCtrl)/(1<<20), "harness-RSS-MiB")
		b.ReportMetric(float64(r.rssAfterIssue)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(r.rssRestart)/(1<<20), "restart-peak-RSS-MiB")
		if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
			b.ReportMetric(float64(limit)/(1<<20), "GOMEMLIMIT-MiB")
		}
		b.ReportMetric(float64(r.heapAfterGC)/(1<<20), "heap-after-GC-MiB")
		b.ReportMetric(r.restartReconciledIn.Seconds(), "restart-reconciled-s")
		b.ReportMetric(float64(r.restartSTSCalls), "restart-sts-calls")
		b.ReportMetric(float64(writes(r.restartAPI, "")), "restart-api-writes")
		b.ReportMetric(float64(r.refreshCallsMin), "refresh-sts-calls/binding-min")
		b.ReportMetric(float64(r.refreshCallsMax), "refresh-sts-calls/binding-max")
		b.ReportMetric(float64(r.refreshSecretWrites)/float64(n), "refresh-secret-writes/binding")
		b.ReportMetric(r.refreshSpan.Seconds(), "refresh-span-s")
	})
}

func apiReads(counts map[string]int) int {
	n := 0
	for k, v := range counts {
		if len(k) > 4 && k[:4] == "GET " {
			n += v
		}
	}
	return n
}

// TestControllerScaleSmoke runs the scale scenario with 20 bindings and checks
// the counts, never the times: one STS call per binding to issue, none after
// a restart over valid Secrets, exactly one call and one Secret write per
// binding in a refresh cycle.
func TestControllerScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	t.Parallel()
	cfg := configFromEnv(t, 20)
	r := runScale(t, cfg)
	if !r.readyVerifiedOK {
		t.Error("not every binding is Ready at the API server")
	}
	if r.stsCalls != cfg.N || r.identityCalls != cfg.N {
		t.Errorf("first issue: %d credential calls and %d GetCallerIdentity calls for %d bindings; want one each", r.stsCalls, r.identityCalls, cfg.N)
	}
	if r.restartSTSCalls != 0 || writes(r.restartAPI, "secrets") != 0 {
		t.Errorf("restart over valid Secrets: %d STS calls, %d Secret writes; want none", r.restartSTSCalls, writes(r.restartAPI, "secrets"))
	}
	if r.refreshEarly == 0 && (r.refreshCallsMin != 1 || r.refreshCallsMax != 1 || r.refreshSecretWrites != cfg.N) {
		t.Errorf("refresh cycle: %d..%d STS calls per binding, %d Secret writes for %d bindings; want exactly one each",
			r.refreshCallsMin, r.refreshCallsMax, r.refreshSecretWrites, cfg.N)
	}
}
