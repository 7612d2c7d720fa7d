package bench

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/controllers"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// podCacheFigures are one cache variant's cost at n pods.
type podCacheFigures struct {
	cached    int     // pods the cache holds after sync
	heapBytes float64 // live heap the cache added, after GC
	rssBytes  float64 // RSS the process grew by while filling it (VmHWM)
	syncIn    time.Duration
}

// BenchmarkPodCache measures the memory the missed-pods report costs: the
// controller's pod cache at STSBIND_BENCH_PODS pods (default 10,000 with
// STSBIND_BENCH_SCALE, 200 otherwise) of the shape a Deployment's pods have
// on a real node (two containers, env, probes, resources, the projected
// ServiceAccount token volume, labels, last-applied-configuration, managed
// fields, a Running status with container statuses). It fills the cache as
// controllers.PodCache strips it, and for comparison as the manager would
// cache whole pods (managed fields dropped, as main.go does for every type).
// The live heap after GC is the cache's own; RSS includes the transient
// decode buffers of the initial list.
func BenchmarkPodCache(b *testing.B) {
	n := 200
	if scale(b) > 0 {
		n = 10000
	}
	n = int(envFloat(b, "STSBIND_BENCH_PODS", float64(n)))
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	t0 := time.Now()
	populatePods(b, env, n)
	b.Logf("created %d pods in %s", n, time.Since(t0).Round(time.Millisecond))

	for b.Loop() {
		stripped := measurePodCache(b, env, controllers.PodCache(), n)
		whole := measurePodCache(b, env, cache.ByObject{Transform: cache.TransformStripManagedFields()}, n)
		b.ReportMetric(float64(n), "pods")
		b.ReportMetric(stripped.heapBytes/(1<<20), "stripped-heap-MiB")
		b.ReportMetric(stripped.heapBytes/float64(n), "stripped-heap-B/pod")
		b.ReportMetric(stripped.rssBytes/(1<<20), "stripped-RSS-growth-MiB")
		b.ReportMetric(whole.heapBytes/(1<<20), "whole-heap-MiB")
		b.ReportMetric(whole.heapBytes/float64(n), "whole-heap-B/pod")
		b.ReportMetric(whole.rssBytes/(1<<20), "whole-RSS-growth-MiB")
		b.Logf("%d pods: stripped cache %.1f MiB heap (%.0f B/pod), RSS +%.1f MiB, synced in %s; whole pods %.1f MiB heap (%.0f B/pod), RSS +%.1f MiB, synced in %s",
			n, stripped.heapBytes/(1<<20), stripped.heapBytes/float64(n), stripped.rssBytes/(1<<20), stripped.syncIn.Round(time.Millisecond),
			whole.heapBytes/(1<<20), whole.heapBytes/float64(n), whole.rssBytes/(1<<20), whole.syncIn.Round(time.Millisecond))
	}
}

// TestPodCacheHarness runs the harness tiny: both variants cache every pod,
// and the stripped one is the smaller. No figure is asserted beyond that.
func TestPodCacheHarness(t *testing.T) {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	const n = 60
	populatePods(t, env, n)
	stripped := measurePodCache(t, env, controllers.PodCache(), n)
	whole := measurePodCache(t, env, cache.ByObject{Transform: cache.TransformStripManagedFields()}, n)
	if stripped.cached != n || whole.cached != n {
		t.Fatalf("cached %d stripped and %d whole pods, want %d", stripped.cached, whole.cached, n)
	}
	t.Logf("%d pods: stripped %.0f B/pod, whole %.0f B/pod", n, stripped.heapBytes/n, whole.heapBytes/n)
}

// populatePods creates n Running pods in 10 namespaces, 5 ServiceAccounts
// each, with concurrent clients; finished pods would be left out of the
// stripped cache, so none is.
func populatePods(tb testing.TB, env *testenv.Env, n int) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pods-%d", i)}}); err != nil {
			tb.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := realisticPod(i)
				// managedFields come from the server, as on a cluster.
				if err := c.Create(ctx, p, client.FieldOwner("kube-controller-manager")); err != nil {
					errs <- err
					return
				}
				p.Status = runningStatus(p)
				if err := c.Status().Update(ctx, p, client.FieldOwner("kubelet")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errs:
			tb.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

// measurePodCache fills a fresh cache of pods, as the variant says, and
// returns what it costs; the cache is stopped before it returns.
func measurePodCache(tb testing.TB, env *testenv.Env, variant cache.ByObject, n int) podCacheFigures {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: variant}})
	if err != nil {
		tb.Fatal(err)
	}
	before := liveHeap()
	rssBefore := resetPeakRSS()
	start := time.Now()
	if _, err := c.GetInformer(ctx, &corev1.Pod{}); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		tb.Fatal("pod cache did not sync")
	}
	var f podCacheFigures
	f.syncIn = time.Since(start)
	var list corev1.PodList
	if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		tb.Fatal(err)
	}
	f.cached = len(list.Items)
	list = corev1.PodList{}
	f.heapBytes = float64(liveHeap()) - float64(before)
	f.rssBytes = float64(peakRSS() - rssBefore)
	runtime.KeepAlive(c)
	return f
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// realisticPod is pod i of a Deployment-like workload.
func realisticPod(i int) *corev1.Pod {
	ns := fmt.Sprintf("pods-%d", i%10)
	app := "app-" + strconv.Itoa(i%5)
	hash := fmt.Sprintf("%010x", i*7919)
	lastApplied := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"` + app + `","namespace":"` + ns + `"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"` + app + `"}},"template":{"metadata":{"labels":{"app":"` + app + `"}},"spec":{"containers":[{"name":"app","image":"registry.example/app:1.4.2"}]}}}}`
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%s-%05d", app, hash[:8], i),
			Labels: map[string]string{
				"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop",
				"app.kubernetes.io/version": "1.4.2", "pod-template-hash": hash,
			},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": lastApplied,
				"prometheus.io/scrape":                             "true",
				"prometheus.io/port":                               "9090",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash[:8], UID: types.UID("0b5e2c1e-1c1e-4a8e-9f5e-" + hash[:8] + "0000"), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: app,
			NodeName:           "node-" + strconv.Itoa(i%50),
			Containers: []corev1.Container{
				{
					Name: "app", Image: "registry.example/app:1.4.2",
					Args:  []string{"--listen=:8080", "--metrics=:9090", "--log-format=json"},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
					Env: []corev1.EnvVar{
						{Name: "LOG_LEVEL", Value: "info"}, {Name: "DB_HOST", Value: "postgres.shop.svc"},
						{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "AWS_CONFIG_FILE", Value: "/var/run/secrets/stsbind.dev/" + app + "/config"},
						{Name: "AWS_REGION", Value: "eu-west-1"}, {Name: "AWS_DEFAULT_REGION", Value: "eu-west-1"},
					},
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: apiresource.MustParse("100m"), corev1.ResourceMemory: apiresource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceMemory: apiresource.MustParse("256Mi")},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "config", MountPath: "/etc/app"},
						{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
						{Name: "stsbind-" + app, MountPath: "/var/run/secrets/stsbind.dev/" + app, ReadOnly: true},
					},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 5},
					LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 10},
					SecurityContext: &corev1.SecurityContext{
						RunAsNonRoot: ptr.To(true), ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
				},
				{
					Name: "proxy", Image: "registry.example/proxy:2.0",
					Args:      []string{"--upstream=127.0.0.1:8080"},
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: apiresource.MustParse("10m"), corev1.ResourceMemory: apiresource.MustParse("32Mi")}},
					VolumeMounts: []corev1.VolumeMount{
						{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
					},
				},
			},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
				}}}},
				{Name: "stsbind-" + app, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: app, DefaultMode: ptr.To[int32](0o444)}}},
			},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			},
		},
	}
}

// runningStatus is what a kubelet reports for a started pod.
func runningStatus(p *corev1.Pod) corev1.PodStatus {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	s := corev1.PodStatus{
		Phase: corev1.PodRunning, HostIP: "10.0.0.7", PodIP: "10.244.3.17", StartTime: &now, QOSClass: corev1.PodQOSBurstable,
		HostIPs: []corev1.HostIP{{IP: "10.0.0.7"}}, PodIPs: []corev1.PodIP{{IP: "10.244.3.17"}},
	}
	for _, t := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		s.Conditions = append(s.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	for _, c := range p.Spec.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image + "@sha256:9c1f0a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b",
			ContainerID: "containerd://4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0",
			Ready:       true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return s
}
