package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
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
	// GoMemLimit is the controller process's GOMEMLIMIT (the harness runs
	// without one): $STSBIND_BENCH_GOMEMLIMIT, e.g. "120MiB"; "" for none.
	GoMemLimit string
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
		GoMemLimit:         os.Getenv("STSBIND_BENCH_GOMEMLIMIT"),
	}
	// The refresh cycle must start after the first issue and the restart are
	// over: it starts about two thirds of a lifetime after each issue.
	c.Lifetime = envDuration(tb, "STSBIND_BENCH_LIFETIME", max(45*time.Second, time.Duration(n)*30*time.Millisecond))
	return c
}

// scaleResult holds the figures of the three phases. Memory is the
// controller process's own (VmHWM: its peak since it started).
type scaleResult struct {
	create time.Duration // creating the ServiceAccounts and bindings (harness)

	idle processMemory // the controller over an empty cluster, caches synced

	// (a) first issue, by a controller started over the new bindings
	readyIn         time.Duration
	stsCalls        int
	identityCalls   int
	api             requestCounts
	memIssue        processMemory
	goMemIssue      string // the Go runtime's view of it
	cpuIssue        cpuTimes
	stsBound        time.Duration // the STS rate limit alone would take this long
	readyVerifiedOK bool

	// (b) a new controller process over valid Secrets
	restartReconciledIn time.Duration
	restartSTSCalls     int
	restartAPI          requestCounts
	memRestart          processMemory
	goMemRestart        string

	// (c) one refresh cycle, by the restarted controller
	refreshSpan         time.Duration // first to last refresh call
	refreshCallsMin     int           // per binding
	refreshCallsMax     int
	refreshSecretWrites int
	refreshAPI          requestCounts
	refreshEarly        int // refresh calls seen before the restart was over
	memRefresh          processMemory
}

// scaleRun is the control plane, fake STS, controller binary and bindings of
// one run.
type scaleRun struct {
	tb         testing.TB
	cfg        scaleConfig
	env        *testenv.Env
	sts        *ststest.Server
	audit      *auditCounter
	dir        string // binary, kubeconfig, audit log, controller logs
	bin        string
	kubeconfig string
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

// readyPolled counts the bindings Ready at the API server, but lists them
// only once the test STS has issued credentials to each: until then the
// count of its calls says enough, and the harness puts no watch or list load
// on the API server and the two cores it shares with the controller.
func (s *scaleRun) readyPolled(ctx context.Context) int {
	if s.sts.OperationCount(ststest.OpAssumeRoleWithWebIdentity) < s.cfg.N {
		return 0
	}
	return s.countReady(ctx)
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

// waitFor polls n until it reaches want, failing after timeout or when the
// controller exits.
func (s *scaleRun) waitFor(what string, p *controllerProcess, timeout time.Duration, n func() int, want int) {
	deadline := time.Now().Add(timeout)
	for n() < want {
		p.alive(s.tb)
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: %d of %d after %s\n%s", what, n(), want, timeout, p.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// workersStarted tells whether the binding controller's caches have synced
// and its workers run (the manager logs it).
func workersStarted(p *controllerProcess) bool {
	raw, _ := os.ReadFile(p.logPath)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, `"Starting workers"`) && strings.Contains(line, `"controller":"iamrolebinding"`) {
			return true
		}
	}
	return false
}

// reconciledAll tells whether the binding controller has finished at least
// n reconciles and has nothing queued or running.
func reconciledAll(ctx context.Context, p *controllerProcess, n int) (bool, error) {
	m, err := p.scrape(ctx, `controller="iamrolebinding"`,
		"controller_runtime_reconcile_total", "workqueue_depth", "controller_runtime_active_workers")
	if err != nil {
		return false, err
	}
	return m["controller_runtime_reconcile_total"] >= float64(n) && m["workqueue_depth"] == 0 &&
		m["controller_runtime_active_workers"] == 0, nil
}

// settle lets the last events, Secret-triggered reconciles and status writes
// of a phase land before its API requests are counted.
const settle = 2 * time.Second

func (s *scaleRun) requests() requestCounts {
	c, err := s.audit.requests()
	if err != nil {
		s.tb.Fatal(err)
	}
	return c
}

func runScale(tb testing.TB, cfg scaleConfig) scaleResult {
	dir := tb.TempDir()
	bin := buildController(tb, dir)
	args, auditLog, err := auditArgs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	env, err := testenv.Start(testenv.Options{APIServerArgs: args})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	fake := ststest.NewServer()
	defer fake.Close()
	fake.SetLatency(cfg.STSLatency)
	fake.SetLifetime("", cfg.Lifetime)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &scaleRun{tb: tb, cfg: cfg, env: env, sts: fake, audit: newAuditCounter(auditLog), dir: dir, bin: bin}
	s.kubeconfig = controllerKubeconfig(ctx, tb, env, dir)
	var res scaleResult

	// The controller's own floor: started over an empty cluster.
	idle := s.startController("idle")
	defer idle.kill()
	s.waitFor("the idle controller's workers", idle, 2*time.Minute, func() int {
		if workersStarted(idle) {
			return 1
		}
		return 0
	}, 1)
	res.idle = idle.memory(tb)
	idle.stop(tb)
	s.requests()

	start := time.Now()
	s.populate(ctx)
	res.create = time.Since(start)
	if cfg.STSQPS > 0 {
		res.stsBound = time.Duration(float64(max(0, cfg.N-cfg.STSBurst)) / cfg.STSQPS * float64(time.Second))
	}

	// (a) Every binding gets its first credentials.
	start = time.Now()
	first := s.startController("issue")
	defer first.kill()
	cpuBefore, err := sampleCPU(first.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	profiled := s.profileCPU(ctx, first, "issue")
	s.waitFor("bindings Ready", first, 10*time.Minute, func() int { return s.readyPolled(ctx) }, cfg.N)
	res.readyIn = time.Since(start)
	cpuAfter, err := sampleCPU(first.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	res.cpuIssue = cpuAfter.minus(cpuBefore)
	time.Sleep(settle)
	// Credential calls; the GetCallerIdentity check of new credentials is
	// counted apart (one per new binding, none on refresh or restart).
	res.stsCalls = len(fake.OperationCalls(ststest.OpAssumeRoleWithWebIdentity))
	res.identityCalls = len(fake.OperationCalls(ststest.OpGetCallerIdentity))
	res.api = s.requests()
	res.readyVerifiedOK = s.countReady(ctx) == cfg.N
	res.memIssue = first.memory(tb)
	res.goMemIssue = first.goMemory(ctx)
	<-profiled
	first.saveHeapProfile(ctx, tb, fmt.Sprintf("heap-%d-issue", cfg.N))

	// (b) A new controller process over Secrets that are all still valid.
	first.stop(tb)
	s.requests() // the first process's last requests, as it stopped
	callsBefore := fake.CallCount("")
	start = time.Now()
	second := s.startController("restart")
	defer second.kill()
	s.waitFor("bindings reconciled after the restart", second, 5*time.Minute, func() int {
		ok, err := reconciledAll(ctx, second, cfg.N)
		if err != nil || !ok {
			return 0
		}
		return 1
	}, 1)
	res.restartReconciledIn = time.Since(start)
	restartOver := time.Now()
	time.Sleep(settle)
	res.memRestart = second.memory(tb)
	res.goMemRestart = second.goMemory(ctx)
	second.saveHeapProfile(ctx, tb, fmt.Sprintf("heap-%d-restart", cfg.N))
	res.restartSTSCalls = fake.CallCount("") - callsBefore
	res.restartAPI = s.requests()

	// (c) The refresh cycle: each binding's credentials come due once.
	callsBefore = fake.CallCount("")
	s.waitFor("bindings refreshed", second, cfg.Lifetime+5*time.Minute, func() int {
		// Fewer calls than bindings: not all refreshed, and no need to copy
		// the call log to see it (polled every 50 ms for minutes).
		if calls := fake.CallCount("") - callsBefore; calls < cfg.N {
			return calls
		}
		return len(perRole(fake.Calls("")[callsBefore:]))
	}, cfg.N)
	time.Sleep(settle)
	refresh := fake.Calls("")[callsBefore:]
	res.refreshAPI = s.requests()
	res.refreshSecretWrites = res.refreshAPI.writes("secrets")
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
	res.memRefresh = second.memory(tb)
	second.stop(tb)
	return res
}

// profileCPU records, when profiles are asked for, 20 s of CPU profile of
// the controller and of the API server at once, from 10 s after start: what
// each spends its CPU on while bindings are issued. The channel closes when
// both are written.
func (s *scaleRun) profileCPU(ctx context.Context, p *controllerProcess, phase string) <-chan struct{} {
	done := make(chan struct{})
	if profileDir() == "" {
		close(done)
		return done
	}
	apiClient, err := rest.HTTPClientFor(s.env.Config)
	if err != nil {
		s.tb.Fatal(err)
	}
	// envtest's Host ends in a slash.
	apiServer := strings.TrimSuffix(s.env.Config.Host, "/")
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			saveProfile(ctx, s.tb, http.DefaultClient, p.pprof+"/profile?seconds=20", fmt.Sprintf("cpu-%d-%s-controller", s.cfg.N, phase))
		})
		wg.Go(func() {
			saveProfile(ctx, s.tb, apiClient, apiServer+"/debug/pprof/profile?seconds=20", fmt.Sprintf("cpu-%d-%s-apiserver", s.cfg.N, phase))
		})
		wg.Wait()
	}()
	return done
}

func perRole(calls []ststest.Call) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		m[c.RoleARN]++
	}
	return m
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// BenchmarkControllerScale creates STSBIND_BENCH_SCALE bindings (20 without
// it) against an STS answering in 20ms, and measures (a) the first issue,
// (b) a controller restart over valid Secrets, (c) one refresh cycle. b.N is
// ignored: one run is the whole scenario; use -benchtime=1x. The controller
// is the stsbind binary in its own process; RSS figures are that process's.
func BenchmarkControllerScale(b *testing.B) {
	n := scale(b)
	if n == 0 {
		n = 20
	}
	cfg := configFromEnv(b, n)
	name := fmt.Sprintf("bindings=%d", n)
	if cfg.GoMemLimit != "" {
		name += "/gomemlimit=" + cfg.GoMemLimit
	}
	b.Run(name, func(b *testing.B) {
		var r scaleResult
		for b.Loop() {
			r = runScale(b, cfg)
		}
		b.Logf("config: %+v", cfg)
		b.Logf("created in %s", r.create.Round(time.Millisecond))
		b.Logf("api (a) issue: %v", r.api)
		b.Logf("api (b) restart: %v", r.restartAPI)
		b.Logf("api (c) refresh: %v", r.refreshAPI)
		b.Logf("RSS: idle %.0f MiB; (a) peak %.0f, now %.0f; (b) restarted peak %.0f, now %.0f; (c) peak %.0f, now %.0f",
			mib(r.idle.Peak), mib(r.memIssue.Peak), mib(r.memIssue.Current), mib(r.memRestart.Peak), mib(r.memRestart.Current),
			mib(r.memRefresh.Peak), mib(r.memRefresh.Current))
		b.Logf("RSS anonymous/file: idle %.0f/%.0f MiB; (a) %.0f/%.0f; (b) %.0f/%.0f", mib(r.idle.Anon), mib(r.idle.File),
			mib(r.memIssue.Anon), mib(r.memIssue.File), mib(r.memRestart.Anon), mib(r.memRestart.File))
		b.Logf("Go memory: (a) %s; (b) %s", r.goMemIssue, r.goMemRestart)
		if !r.readyVerifiedOK {
			b.Errorf("the API server does not show all %d bindings Ready", n)
		}
		if r.refreshEarly > 0 {
			b.Logf("%d refresh calls started before the restart was over: raise STSBIND_BENCH_LIFETIME", r.refreshEarly)
		}
		perN := func(v int) float64 { return float64(v) / float64(n) }
		peak := max(r.memIssue.Peak, r.memRestart.Peak, r.memRefresh.Peak)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(r.readyIn.Seconds(), "ready-s")
		b.ReportMetric(perN(r.stsCalls), "sts-calls/binding")
		b.ReportMetric(perN(r.identityCalls), "identity-calls/binding")
		b.ReportMetric(perN(r.api.perBinding()), "api-requests/binding")
		b.ReportMetric(perN(r.api.sum(func(string) bool { return true })), "api-requests-all/binding")
		b.ReportMetric(perN(r.api.writes("")), "api-writes/binding")
		b.ReportMetric(perN(r.api.reads()), "api-reads/binding")
		b.ReportMetric(r.stsBound.Seconds(), "sts-limit-bound-s")
		for proc, sec := range r.cpuIssue {
			b.ReportMetric(sec*1000/float64(n), proc+"-cpu-ms/binding")
		}
		b.ReportMetric(cfg.STSQPS, "sts-qps")
		b.ReportMetric(float64(cfg.STSBurst), "sts-burst")
		b.ReportMetric(float64(cfg.KubeQPS), "kube-qps")
		b.ReportMetric(float64(cfg.MaxConcurrentRecon), "concurrency")
		b.ReportMetric(mib(r.idle.Peak), "idle-RSS-MiB")
		b.ReportMetric(mib(r.memIssue.Peak), "peak-RSS-MiB")
		b.ReportMetric(mib(r.memRestart.Peak), "restart-peak-RSS-MiB")
		b.ReportMetric(mib(r.memRefresh.Peak), "refresh-peak-RSS-MiB")
		b.ReportMetric(float64(peak-r.idle.Peak)/1024/float64(n), "RSS-KiB/binding")
		b.ReportMetric(r.restartReconciledIn.Seconds(), "restart-reconciled-s")
		b.ReportMetric(float64(r.restartSTSCalls), "restart-sts-calls")
		b.ReportMetric(float64(r.restartAPI.writes("")), "restart-api-writes")
		b.ReportMetric(float64(r.refreshCallsMin), "refresh-sts-calls/binding-min")
		b.ReportMetric(float64(r.refreshCallsMax), "refresh-sts-calls/binding-max")
		b.ReportMetric(perN(r.refreshSecretWrites), "refresh-secret-writes/binding")
		b.ReportMetric(perN(r.refreshAPI.perBinding()), "refresh-api-requests/binding")
		b.ReportMetric(r.refreshSpan.Seconds(), "refresh-span-s")
	})
}

// TestControllerScaleSmoke runs the scale scenario with 20 bindings and checks
// the counts, never the times: one STS call and four API requests per new
// binding (a TokenRequest, the Secret's create, one status patch, one
// event); none of either after a restart over valid Secrets; exactly one
// call and one Secret write per binding in a refresh cycle.
func TestControllerScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and the controller binary")
	}
	t.Parallel()
	cfg := configFromEnv(t, 20)
	r := runScale(t, cfg)
	t.Logf("api (a) %v; (b) %v; (c) %v", r.api, r.restartAPI, r.refreshAPI)
	if !r.readyVerifiedOK {
		t.Error("not every binding is Ready at the API server")
	}
	if r.stsCalls != cfg.N || r.identityCalls != cfg.N {
		t.Errorf("first issue: %d credential calls and %d GetCallerIdentity calls for %d bindings; want one each", r.stsCalls, r.identityCalls, cfg.N)
	}
	for _, k := range []string{"create serviceaccounts/token", "create secrets", "patch iamrolebindings/status", "create events"} {
		if r.api[k] != cfg.N {
			t.Errorf("first issue: %d %q requests for %d bindings; want one each", r.api[k], k, cfg.N)
		}
	}
	if got := r.api.perBinding(); got != 4*cfg.N {
		t.Errorf("first issue: %d API requests for %d bindings, want 4 each: %v", got, cfg.N, r.api)
	}
	if r.api["create tokenreviews"] != 1 {
		t.Errorf("first issue: %d TokenReviews for one audience, want 1 (the workers share its verdict)", r.api["create tokenreviews"])
	}
	if r.restartSTSCalls != 0 || r.restartAPI.writes("") != 0 || r.restartAPI.perBinding() != 0 {
		t.Errorf("restart over valid Secrets: %d STS calls, %d API writes, %d requests beyond the caches' watches; want none: %v",
			r.restartSTSCalls, r.restartAPI.writes(""), r.restartAPI.perBinding(), r.restartAPI)
	}
	if r.refreshEarly == 0 && (r.refreshCallsMin != 1 || r.refreshCallsMax != 1 || r.refreshSecretWrites != cfg.N) {
		t.Errorf("refresh cycle: %d..%d STS calls per binding, %d Secret writes for %d bindings; want exactly one each",
			r.refreshCallsMin, r.refreshCallsMax, r.refreshSecretWrites, cfg.N)
	}
	if r.memIssue.Peak == 0 || r.memRestart.Peak == 0 || r.idle.Peak == 0 {
		t.Errorf("no RSS read from the controller process: %+v %+v %+v", r.idle, r.memIssue, r.memRestart)
	}
}
