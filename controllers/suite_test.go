package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap/zapcore"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/index"
	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// labelRestart marks bindings that only the restart test's own managers see.
const labelRestart = "test.stsbind.dev/restart"

// The default provider of every manager here: the fake STS, every
// namespace, every role of the test account.
const (
	testProvider = "test-sts"
	testAudience = "sts.example.test"
	testRoles    = "arn:aws:iam::123456789012:role/*"
	// testOperatorNamespace holds providers' IAM user keys.
	testOperatorNamespace = "stsbind-system"
	testClusterName       = "test-cluster"
)

var (
	env  *testenv.Env
	k8s  client.Client
	fake *ststest.Server
	logs = &testenv.SyncBuffer{}
)

func TestMain(m *testing.M) {
	// Every log line of every manager, at the most verbose level, goes into
	// logs so that the leak check below sees all of it.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapcore.Level(-2))))
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = env.Client
	fake = ststest.NewServer()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testOperatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := k8s.Create(context.Background(), &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: testProvider},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Endpoint:          fake.URL,
			Audience:          testAudience,
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{testRoles},
			// The tests create bindings by the hundred; the limit is not what they test.
			RateLimit: stsbindv1.RateLimit{QPS: 5000, Burst: 5000, NamespaceQPS: 5000},
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	stopped, err := startManager(ctx, managerOptions{
		bindingSelector: labels.NewSelector().Add(mustRequirement(labelRestart, selection.DoesNotExist, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	code := m.Run()
	if code == 0 {
		if err := checkNoCredentialMaterial(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: credential material leaked:", err)
			code = 1
		}
	}
	cancel()
	<-stopped
	fake.Close()
	_ = env.Stop()
	if code != 0 && os.Getenv("STSBIND_TEST_LOGS") != "" {
		fmt.Fprintln(os.Stderr, logs.String())
	}
	os.Exit(code)
}

type managerOptions struct {
	bindingSelector labels.Selector
	config          *rest.Config // default: envtest's admin
	logger          *logr.Logger
	skipNameCheck   bool
}

// startManager runs a manager with the credential controller, as main.go
// builds it, against the fake STS. The returned channel closes when it stops.
func startManager(ctx context.Context, o managerOptions) (<-chan struct{}, error) {
	opts := ctrl.Options{
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:            controllers.SecretCache(),
			&corev1.Pod{}:               controllers.PodCache(),
			&stsbindv1.IAMRoleBinding{}: {Label: o.bindingSelector},
		}},
		HealthProbeBindAddress: "0",
	}
	if o.logger != nil {
		opts.Logger = *o.logger
	}
	cfg := rest.CopyConfig(env.Config)
	if o.config != nil {
		cfg = rest.CopyConfig(o.config)
	}
	cfg.QPS, cfg.Burst = 500, 1000 // main.go's --kube-api-qps and --kube-api-burst
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	if err := index.SetupProviders(ctx, mgr.GetFieldIndexer(), testProvider); err != nil {
		return nil, err
	}
	sts := stsclient.New(stsclient.Options{})
	audiences := &controllers.AudienceGuard{Client: mgr.GetClient()}
	c := countingClient{mgr.GetClient()}
	r := &controllers.IAMRoleBindingReconciler{
		Client:             c,
		APIReader:          mgr.GetAPIReader(),
		Recorder:           mgr.GetEventRecorder("stsbind"),
		STS:                sts,
		Audiences:          audiences,
		DefaultProvider:    testProvider,
		DefaultRegion:      "us-east-1",
		OperatorNamespace:  testOperatorNamespace,
		ClusterName:        testClusterName,
		SkipNameValidation: o.skipNameCheck,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := newRestartReconciler(mgr, o.skipNameCheck).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if !o.skipNameCheck {
		metrics.Registry.MustRegister(controllers.BindingMetrics{Reader: mgr.GetCache()})
		// One provider status writer is enough; the restart managers skip it.
		if err := (&controllers.ClusterSTSProviderReconciler{
			Client: mgr.GetClient(), Audiences: audiences, Forget: sts.Forget, DefaultProvider: testProvider,
		}).SetupWithManager(mgr); err != nil {
			return nil, err
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	return done, nil
}

// tokensMinted counts the TokenRequests the controllers made, by
// "namespace/serviceAccount".
var tokensMinted = &counter{n: map[string]int{}}

type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[key]++
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// countingClient counts the ServiceAccount tokens minted through it.
type countingClient struct{ client.Client }

func (c countingClient) SubResource(sub string) client.SubResourceClient {
	if sub == "token" {
		return countingTokens{c.Client.SubResource(sub)}
	}
	return c.Client.SubResource(sub)
}

type countingTokens struct{ client.SubResourceClient }

func (c countingTokens) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	tokensMinted.add(obj.GetNamespace() + "/" + obj.GetName())
	err := c.SubResourceClient.Create(ctx, obj, sub, opts...)
	if tr, ok := sub.(*authv1.TokenRequest); ok && err == nil {
		mintedTokens.add(tr.Status.Token)
	}
	return err
}

// mintedTokens holds every ServiceAccount token the controllers minted,
// also those that went only to a TokenReview (WebIdentity mode's audience
// check), for the leak check.
var mintedTokens = &counter{n: map[string]int{}}

func mustRequirement(key string, op selection.Operator, vals []string) labels.Requirement {
	r, err := labels.NewRequirement(key, op, vals)
	if err != nil {
		panic(err)
	}
	return *r
}

// --- helpers shared by the tests --------------------------------------------

// fixture is one test's namespace, ServiceAccount and role.
type fixture struct {
	t    *testing.T
	ns   string
	sa   string
	role string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, ns: "t-" + rand.String(8), sa: "app", role: "arn:aws:iam::123456789012:role/" + "r-" + rand.String(10)}
	f.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}})
	return f
}

func (f *fixture) create(obj client.Object) {
	f.t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		f.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (f *fixture) serviceAccount() {
	f.t.Helper()
	f.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.sa}})
}

func (f *fixture) binding(name string, mutate func(*stsbindv1.IAMRoleBinding)) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	b := &stsbindv1.IAMRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: stsbindv1.IAMRoleBindingSpec{
			ServiceAccountName: f.sa,
			RoleARN:            f.role,
		},
	}
	if mutate != nil {
		mutate(b)
	}
	f.create(b)
	return b
}

// update changes the binding's spec on the API server, on the latest
// version: the controller's status writes change it under the test.
func (f *fixture) update(b *stsbindv1.IAMRoleBinding, mutate func(*stsbindv1.IAMRoleBindingSpec)) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
			return err
		}
		mutate(&b.Spec)
		return k8s.Update(context.Background(), b)
	})
	if err != nil {
		f.t.Fatalf("updating %s: %v", b.Name, err)
	}
}

func (f *fixture) get(obj client.Object, name string) error {
	return k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, obj)
}

// eventually polls cond every 50ms until it returns true or the deadline
// passes; the last message says what was still missing.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady waits until the binding's Ready condition has the status and
// reason, at the current generation, and returns the binding.
func (f *fixture) waitReady(name string, status metav1.ConditionStatus, reason string) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	return f.waitCondition(name, stsbindv1.ConditionReady, status, reason)
}

// waitCondition waits until the binding's condition of type has the status
// and reason, at the current generation, and returns the binding.
func (f *fixture) waitCondition(name, typ string, status metav1.ConditionStatus, reason string) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	var b stsbindv1.IAMRoleBinding
	eventually(f.t, 60*time.Second, func() (bool, string) {
		if err := f.get(&b, name); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(b.Status.Conditions, typ)
		if c == nil {
			return false, "no " + typ + " condition yet"
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != b.Generation {
			return false, fmt.Sprintf("%s=%s reason=%s gen=%d/%d: %s", typ, c.Status, c.Reason, c.ObservedGeneration, b.Generation, c.Message)
		}
		return true, ""
	})
	return &b
}

func (f *fixture) secret(name string) *corev1.Secret {
	f.t.Helper()
	var s corev1.Secret
	if err := f.get(&s, name); err != nil {
		f.t.Fatalf("reading Secret %s: %v", name, err)
	}
	return &s
}

// events returns the events.k8s.io Events about a binding.
func (f *fixture) events(binding string) []eventsv1.Event {
	f.t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil {
		f.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == binding && e.Regarding.Kind == "IAMRoleBinding" {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event of the type and reason about the binding.
func (f *fixture) waitEvent(binding, eventType, reason string) eventsv1.Event {
	f.t.Helper()
	var found eventsv1.Event
	eventually(f.t, 15*time.Second, func() (bool, string) {
		var seen []string
		for _, e := range f.events(binding) {
			if e.Type == eventType && e.Reason == reason {
				found = e
				return true, ""
			}
			seen = append(seen, e.Type+"/"+e.Reason)
		}
		return false, fmt.Sprintf("no %s event %s; have %v", eventType, reason, seen)
	})
	return found
}

// checkNoCredentialMaterial scans every log line, Event and binding status
// written during the run for any access key, secret key, session token or
// ServiceAccount token the fake STS saw or issued.
func checkNoCredentialMaterial() error {
	ctx := context.Background()
	var secrets []string
	for _, iss := range fake.Issued() {
		secrets = append(secrets, iss.AccessKeyID, iss.SecretAccessKey, iss.SessionToken)
	}
	// The providers' IAM user keys, as the admin stored them.
	var keySecrets corev1.SecretList
	if err := k8s.List(ctx, &keySecrets, client.InNamespace(testOperatorNamespace)); err != nil {
		return err
	}
	userKeys := 0
	for _, ks := range keySecrets.Items {
		if v := ks.Data[controllers.KeySecretAccessKey]; len(v) >= 16 {
			secrets = append(secrets, string(v))
			userKeys++
		}
	}
	mintedTokens.mu.Lock()
	for tok := range mintedTokens.n {
		parts := strings.Split(tok, ".")
		secrets = append(secrets, tok, parts[len(parts)-1])
	}
	minted := len(mintedTokens.n)
	mintedTokens.mu.Unlock()
	tokens := 0
	for _, c := range fake.Calls("") {
		if c.Token != "" {
			tokens++
			// A JWT's signature part alone identifies it; the header is shared.
			parts := strings.Split(c.Token, ".")
			secrets = append(secrets, c.Token, parts[len(parts)-1])
		}
	}
	if len(fake.Calls("")) == 0 {
		fmt.Println("leak check: no STS call in this run (a -run filter without integration tests)")
		return nil
	}
	if len(fake.Issued()) == 0 || tokens == 0 {
		return fmt.Errorf("the leak check saw no credentials (%d) or tokens (%d): it would prove nothing", len(fake.Issued()), tokens)
	}
	var places []string
	logText := logs.String()
	if !strings.Contains(logText, "Wrote IAMRoleBinding credentials") {
		return fmt.Errorf("the captured log lacks the controller's lines: capture is broken")
	}
	places = append(places, logText)
	var events eventsv1.EventList
	if err := k8s.List(ctx, &events); err != nil {
		return err
	}
	for _, e := range events.Items {
		places = append(places, e.Note, e.Reason)
	}
	var bindings stsbindv1.IAMRoleBindingList
	if err := k8s.List(ctx, &bindings); err != nil {
		return err
	}
	// Metrics, as a scrape of the manager's registry would render them.
	families, err := metrics.Registry.Gather()
	if err != nil {
		return err
	}
	var scrape strings.Builder
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(&scrape, mf); err != nil {
			return err
		}
	}
	for _, want := range []string{
		`stsbind_sts_requests_total{operation="AssumeRoleWithWebIdentity",result="success"}`,
		// A -run filter may leave no binding with a scheduled refresh, or
		// with pods (TestMissedPods: stsbind_binding_pods_without_credentials
		// and Warning events naming pods, all scanned below).
		controllers.MetricExpiration + "{", controllers.MetricReady + "{",
	} {
		if !strings.Contains(scrape.String(), want) {
			return fmt.Errorf("the metrics lack %s: the scrape would prove nothing", want)
		}
	}
	places = append(places, scrape.String())
	for _, b := range bindings.Items {
		raw, _ := json.Marshal(b.Status)
		places = append(places, string(raw))
	}
	for _, s := range secrets {
		for _, p := range places {
			if s != "" && strings.Contains(p, s) {
				n := min(len(s), 8)
				return fmt.Errorf("a value starting %q appears in logs, events or status", s[:n])
			}
		}
	}
	// A -run filter may leave out the key tests; the full suite has some.
	fmt.Printf("leak check: %d provider keys, ", userKeys)
	fmt.Printf("%d minted tokens, ", minted)
	fmt.Printf("%d credentials and %d tokens absent from %d bytes of logs, %d events, %d statuses and %d bytes of metrics\n",
		len(fake.Issued()), tokens, len(logText), len(events.Items), len(bindings.Items), scrape.Len())
	return nil
}
