package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/drain"
)

// Event reason of a pod admitted without credentials.
const ReasonInjectionSkipped = "InjectionSkipped"

var (
	lookupFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stsbind_webhook_lookup_failures_total",
		Help: "Pods whose IAMRoleBindings could not be looked up, by the failure policy applied (Ignore: admitted without credentials; Fail: denied).",
	}, []string{"failure_policy"})
	liveLookups = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stsbind_webhook_live_lookups_total",
		Help: "IAMRoleBinding Lists the webhook sent to the API server; each serves the pods of one namespace that arrived while the previous one ran.",
	})
)

func init() {
	metrics.Registry.MustRegister(lookupFailures, liveLookups)
}

// PodDefaulter is the admission.Defaulter that injects credentials into pods.
type PodDefaulter struct {
	// Cache is the manager's cache; it holds only the Secrets labelled as
	// stsbind's.
	Cache client.Reader
	// APIReader reads from the API server: the bindings of each pod's
	// namespace, and the metadata of Secrets the cache does not hold.
	APIReader client.Reader
	// Recorder records a Warning event when a pod is admitted without
	// credentials or a binding is refused.
	Recorder events.EventRecorder
	// FailurePolicy says what happens to a pod whose bindings cannot be looked
	// up: Ignore admits it unchanged, Fail denies it.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// Namespaces limits injection to these namespaces (the controller's
	// --watch-namespaces); empty means all.
	Namespaces []string
	// DefaultProvider is the ClusterSTSProvider of bindings without
	// spec.providerRef (the controller's --default-provider), whose rules
	// WebIdentity bindings must pass.
	DefaultProvider string
	// Draining, once set, makes each response close its connection, so that
	// the API server's next review goes to a replica that stays.
	Draining *drain.Flag
	Options  Options

	liveOnce sync.Once
	live     *liveLister
}

// failurePolicy in the marker is only the generated default: kustomize and the
// chart set the installed one, together with the namespaceSelector.
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=pods.stsbind.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,timeoutSeconds=5
// +kubebuilder:rbac:groups=stsbind.dev,resources=iamrolebindings,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// PodWebhookPath is where the webhook serves (config/webhook, the chart).
const PodWebhookPath = "/mutate--v1-pod"

// SetupWithManager registers the webhook at PodWebhookPath.
func (d *PodDefaulter) SetupWithManager(mgr ctrl.Manager) error {
	mgr.GetWebhookServer().Register(PodWebhookPath, drain.CloseConnections(d.Webhook(), d.Draining))
	return nil
}

// Default injects the credentials of the pod's bindings, leaving out those
// whose Secret belongs to someone else (with a Warning event). It returns an error,
// which denies the pod whatever the webhook's failurePolicy, only when the
// bindings cannot be looked up and FailurePolicy is Fail.
func (d *PodDefaulter) Default(ctx context.Context, pod *corev1.Pod) error {
	if optedOut(pod) {
		return nil
	}
	ns := pod.Namespace
	if req, err := admission.RequestFromContext(ctx); err == nil && req.Namespace != "" {
		ns = req.Namespace // a pod created without metadata.namespace
	}
	if !d.covers(ns) {
		return nil
	}
	sa := serviceAccountOf(pod)
	bindings, err := d.lookup(ctx, ns, sa)
	if err != nil {
		return d.lookupFailed(ctx, pod, ns, sa, err)
	}
	secrets, err := d.secretsOf(ctx, ns, pod, bindings)
	if err != nil {
		return d.lookupFailed(ctx, pod, ns, sa, err)
	}
	bindings, refused := usableBindings(bindings, secrets)
	for _, b := range refused {
		d.refused(ctx, pod, ns, sa, b)
	}
	opts := d.Options
	if bindings, opts.WebIdentity, err = d.webIdentityTargets(ctx, pod, ns, bindings); err != nil {
		return d.lookupFailed(ctx, pod, ns, sa, err)
	}
	if len(bindings) == 0 {
		return nil
	}
	envFrom, err := d.envFromNames(ctx, ns, pod)
	if err != nil {
		return d.lookupFailed(ctx, pod, ns, sa, err)
	}
	mutatePodWith(pod, bindings, opts, envFrom)
	return nil
}

func (d *PodDefaulter) covers(ns string) bool {
	if len(d.Namespaces) == 0 {
		return true
	}
	for _, n := range d.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// lookup lists the bindings of ServiceAccount sa. The informer cache lags the
// API server, by up to tens of milliseconds, so it cannot tell whether a
// binding was created or changed just before the pod: every pod gets its
// bindings from a List of its namespace that began after its review arrived,
// shared with the pods of that namespace that arrived while the previous List
// ran (liveLister).
func (d *PodDefaulter) lookup(ctx context.Context, ns, sa string) ([]stsbindv1.IAMRoleBinding, error) {
	d.liveOnce.Do(func() { d.live = newLiveLister(d.APIReader, 10*time.Second) })
	items, err := d.live.list(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("listing IAMRoleBindings from the API server: %w", err)
	}
	n := 0
	for i := range items {
		if items[i].Spec.ServiceAccountName == sa {
			n++
		}
	}
	if n == 0 {
		return nil, nil
	}
	// The items are shared with the other pods of the List: copy the ones
	// of sa (shallow: mutatePod only reads them).
	mine := make([]stsbindv1.IAMRoleBinding, 0, n)
	for i := range items {
		if items[i].Spec.ServiceAccountName == sa {
			mine = append(mine, items[i])
		}
	}
	return mine, nil
}

func (d *PodDefaulter) lookupFailed(ctx context.Context, pod *corev1.Pod, ns, sa string, err error) error {
	policy := d.FailurePolicy
	if policy != admissionregistrationv1.Fail {
		policy = admissionregistrationv1.Ignore
	}
	lookupFailures.WithLabelValues(string(policy)).Inc()
	if policy == admissionregistrationv1.Fail {
		return apierrors.NewServiceUnavailable(fmt.Sprintf(
			"stsbind could not look up the IAMRoleBindings of ServiceAccount %s/%s or their Secrets (%v), so the pod would start without its AWS credentials; "+
				"retry in a moment, check that the stsbind operator is running and may list iamrolebindings and get secrets, "+
				"or annotate the pod %s: \"false\" to create it without credentials", ns, sa, err, stsbindv1.AnnotationInject))
	}
	name := podName(pod)
	logf.FromContext(ctx).Error(err, "Admitted a pod without AWS credentials", "namespace", ns, "pod", name, "serviceAccount", sa)
	if d.Recorder != nil {
		d.Recorder.Eventf(serviceAccountRef(ns, sa), nil, corev1.EventTypeWarning, ReasonInjectionSkipped, "InjectCredentials",
			"Pod %s was admitted without AWS credentials: %v", name, err)
	}
	return nil
}

// podName names a pod in events and logs; at admission it may have only a generateName.
func podName(pod *corev1.Pod) string {
	if pod.Name == "" {
		return pod.GenerateName + "*"
	}
	return pod.Name
}

// serviceAccountRef is what the webhook's events are about: the pod has no UID
// yet (and maybe no name), so they go to its ServiceAccount.
func serviceAccountRef(ns, sa string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
	}
}
