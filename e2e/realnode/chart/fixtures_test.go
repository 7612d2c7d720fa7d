package chart

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/e2e/realnode/realnodetest"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
)

// leaseName is the operator's leader election lease (main.go).
const leaseName = "stsbind.stsbind.dev"

// requireChart installs the release unless it is installed, with debug
// logs (the restart test reads what the new leader decided), and waits
// until both replicas run and one of them holds the lease. It returns the
// leader's pod name.
func requireChart(t *testing.T) string {
	t.Helper()
	if _, err := runHelm("status", release, "--namespace", namespace); err != nil {
		start := time.Now()
		if _, err := runHelm(append([]string{"install", release, "charts/stsbind", "--namespace", namespace, "--create-namespace",
			"--wait", "--timeout", "5m", "--set", "logLevel=debug"}, values()...)...); err != nil {
			t.Fatalf("%v\n%s", err, operatorLogs())
		}
		t.Logf("installed the chart in %s", time.Since(start).Round(time.Millisecond))
	} else if !strings.Contains(deploymentArgs(t), "--zap-log-level=debug") {
		if _, err := runHelm("upgrade", release, "charts/stsbind", "--namespace", namespace, "--reuse-values",
			"--wait", "--timeout", "5m", "--set", "logLevel=debug"); err != nil {
			t.Fatalf("%v\n%s", err, operatorLogs())
		}
	}
	leader := waitOperator(t, nil)
	webhookSteady(t)
	return leader
}

var probeNamespace struct {
	sync.Once
	name string
}

// webhookSteady waits until several pods in a row, created as server-side
// dry runs (mutating webhooks run, nothing is stored), are injected. One is
// not enough: after the operator pods were replaced, kube-proxy may route
// to a pod that no longer listens, or to nothing, for a while (see the
// restart test), and failurePolicy Ignore then admits pods as they are.
func webhookSteady(t *testing.T) {
	t.Helper()
	probeNamespace.Do(func() {
		probeNamespace.name = "webhook-probe"
		ctx := context.Background()
		if err := suite.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNamespace.name}}); err != nil {
			t.Fatal(err)
		}
		if err := suite.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: probeNamespace.name, Name: "app"}}); err != nil {
			t.Fatal(err)
		}
		suite.CreateBinding(t, probeNamespace.name, "probe", stsbindv1.InjectionFiles)
	})
	const inARow = 8
	streak, misses := 0, 0
	var last error
	for deadline := time.Now().Add(90 * time.Second); streak < inARow; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not inject %d pods in a row (%d missed, last error %v)\nkube-apiserver:\n%s",
				inARow, misses, last, grepLines(suite.Node.LogTail("kube-apiserver", 200), "webhook"))
		}
		pod := suite.AppPod(probeNamespace.name, "probe", images.S3ClientName, "probe", "probe")
		if last = suite.Client.Create(context.Background(), pod, client.DryRunAll); last == nil && len(pod.Spec.Volumes) > 1 {
			streak++
			continue
		}
		streak = 0
		misses++
	}
	if misses > 0 {
		t.Logf("webhook steady after %d pods were admitted without injection", misses)
	}
}

func deploymentArgs(t *testing.T) string {
	t.Helper()
	var d appsv1.Deployment
	if err := suite.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: release}, &d); err != nil {
		t.Fatal(err)
	}
	return strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
}

// waitOperator waits until the Deployment has its two replicas ready, none
// of them in gone, and the lease is held by one of them; it returns that
// pod's name.
func waitOperator(t *testing.T, gone map[string]bool) string {
	t.Helper()
	var leader string
	err := poll(3*time.Minute, func() error {
		pods := operatorPods(t)
		ready := 0
		for _, p := range pods {
			if gone[p.Name] {
				return fmt.Errorf("old pod %s still there", p.Name)
			}
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d of %d operator pods ready", ready, len(pods))
		}
		leader = leaseHolder(t)
		for _, p := range pods {
			if p.Name == leader {
				return nil
			}
		}
		return fmt.Errorf("lease held by %q, not a running operator pod", leader)
	})
	if err != nil {
		t.Fatalf("operator: %v\n%s", err, operatorLogs())
	}
	return leader
}

func operatorPods(t *testing.T) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := suite.Client.List(context.Background(), &pods, client.InNamespace(namespace),
		client.MatchingLabels{"app.kubernetes.io/name": "stsbind", "app.kubernetes.io/instance": release}); err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// leaseHolder is the pod name of the lease holder (controller-runtime's
// identity is "<hostname>_<uuid>"); empty when nobody holds it.
func leaseHolder(t *testing.T) string {
	t.Helper()
	var lease coordinationv1.Lease
	if err := suite.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: leaseName}, &lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	pod, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return pod
}

// testSTS is the in-test STS as a ClusterSTSProvider the operator's pods
// reach on the bridge, through a tap that counts the calls in flight.
type testSTS struct {
	*ststest.Server
	provider string

	mu       sync.Mutex
	inFlight int
	last     time.Time // when the tap last received a call
}

// newTestSTS starts the STS, its tap on the bridge and a provider for it;
// the test's end removes them.
func newTestSTS(t *testing.T) *testSTS {
	t.Helper()
	s := &testSTS{Server: ststest.NewServer(), provider: "ststest-" + strings.ToLower(rand.String(5))}
	t.Cleanup(s.Close)
	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(suite.Node.Network.Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	tap := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.inFlight++
		s.last = time.Now()
		s.mu.Unlock()
		defer func() { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }()
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = tap.Serve(l) }()
	t.Cleanup(func() { _ = tap.Close() })
	p := &stsbindv1.ClusterSTSProvider{
		ObjectMeta: metav1.ObjectMeta{Name: s.provider},
		Spec: stsbindv1.ClusterSTSProviderSpec{
			Region: realnodetest.Region, Endpoint: "http://" + l.Addr().String(), Audience: "sts.amazonaws.com",
			NamespaceSelector: &metav1.LabelSelector{},
			AllowedRoleARNs:   []stsbindv1.RoleARNPattern{"arn:aws:iam::123456789012:role/**"},
		},
	}
	if err := suite.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.Client.Delete(context.Background(), p) })
	return s
}

// InFlight is the number of calls the tap forwarded and not yet answered.
func (s *testSTS) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Quiet tells whether no call is in flight and none came in for d: a call
// whose client gave up is still answered, and counted, by the STS after
// its latency.
func (s *testSTS) Quiet(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight == 0 && time.Since(s.last) > d
}

// roleARN is the role of binding name at the in-test STS: one per binding,
// so that calls count per binding.
func roleARN(name string) string { return "arn:aws:iam::123456789012:role/" + name }

// bindings creates n bindings b0..b<n-1> of ServiceAccount app in ns on
// the in-test STS, without injection, and waits until all are Ready.
func (s *testSTS) bindings(t *testing.T, ns string, n int, edits ...func(*stsbindv1.IAMRoleBinding)) []*stsbindv1.IAMRoleBinding {
	t.Helper()
	var out []*stsbindv1.IAMRoleBinding
	for i := range n {
		name := fmt.Sprintf("b%d", i)
		out = append(out, suite.CreateBinding(t, ns, name, stsbindv1.InjectionNone, append([]func(*stsbindv1.IAMRoleBinding){func(b *stsbindv1.IAMRoleBinding) {
			b.Spec.ProviderRef = &stsbindv1.ProviderReference{Name: s.provider}
			b.Spec.RoleARN = roleARN(ns + "-" + name)
		}}, edits...)...))
	}
	for _, b := range out {
		suite.WaitReady(t, b, operatorLogs)
	}
	return out
}

// secretOf reads a binding's Secret.
func secretOf(t *testing.T, b *stsbindv1.IAMRoleBinding) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := suite.Client.Get(context.Background(), client.ObjectKey{Namespace: b.Namespace, Name: b.SecretNameOrDefault()}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// podLog is a pod's whole log of one container; "" when it cannot be read.
func podLog(ns, pod, container string) string {
	raw, err := suite.Clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		return ""
	}
	return string(raw)
}
