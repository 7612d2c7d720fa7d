// Command stsbind runs the stsbind operator: the credential controller that
// keeps temporary AWS credentials for each IAMRoleBinding in a Secret, and the
// webhook that hands them to the pods.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credserver"
	"github.com/stsbind/stsbind/internal/drain"
	"github.com/stsbind/stsbind/internal/operator"
	"github.com/stsbind/stsbind/webhook"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(stsbindv1.AddToScheme(scheme))
}

type options struct {
	metricsAddr, probeAddr     string
	pprofAddr                  string
	secureMetrics, enableHTTP2 bool
	leaderElect                bool
	leaderElectionNamespace    string
	watchNamespaces            string
	defaultRegion              string
	defaultProvider            string
	operatorNamespace          string
	clusterName                string
	kubeQPS                    float64
	kubeBurst                  int
	maxConcurrentReconciles    int
	restartOnRotation          bool
	restartMinInterval         time.Duration

	shutdownDelay                                           time.Duration
	webhookCertMode, webhookCertDir, webhookFailurePolicy   string
	webhookHost                                             string
	webhookPort                                             int
	webhookCertSecret, webhookService, webhookConfiguration string

	sidecarImage, sidecarCPU, sidecarMemory string
	sidecarPort                             int
}

func main() {
	// The Endpoint-mode sidecar runs from the same image: `stsbind credentials-server`.
	if len(os.Args) > 1 && os.Args[1] == credserver.Subcommand {
		os.Exit(credserver.Main(os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint (:8443 for HTTPS, :8080 for HTTP, 0 to disable).")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of Go's pprof endpoints, plain HTTP without authentication (empty: off); for profiling on loopback only.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics and webhook servers (off: HTTP/2 Stream Cancellation and Rapid Reset CVEs).")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader so that only one replica reconciles.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch (default: all).")
	flag.StringVar(&o.defaultRegion, "default-region", "us-east-1", "AWS region for bindings without spec.region.")
	flag.StringVar(&o.defaultProvider, "default-provider", "aws", "ClusterSTSProvider of bindings without spec.providerRef (empty: such bindings are refused).")
	flag.StringVar(&o.operatorNamespace, "operator-namespace", os.Getenv("POD_NAMESPACE"), "The operator's own namespace, which holds the Secrets with providers' IAM user keys (default: $POD_NAMESPACE).")
	flag.StringVar(&o.clusterName, "cluster-name", "", "Value of the stsbind-cluster session tag on AssumeRole and GetFederationToken sessions (empty: no such tag).")
	// Each resource type gets its own client-side limit. Issuing credentials
	// costs about five requests per binding, so at 100/s 10,000 new bindings
	// took minutes; --max-concurrent-reconciles and the API server's priority
	// and fairness bound the load anyway.
	flag.Float64Var(&o.kubeQPS, "kube-api-qps", 500, "Steady Kubernetes API requests per second, per resource type.")
	flag.IntVar(&o.kubeBurst, "kube-api-burst", 1000, "Kubernetes API requests allowed in a burst, per resource type.")
	flag.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 16, "Bindings reconciled in parallel.")
	flag.BoolVar(&o.restartOnRotation, "restart-on-rotation", true, "Let bindings with injection.restartOnRotation: Rollout restart the workloads whose pods hold their credentials in environment variables (false: such bindings get a Warning event, nothing is restarted).")
	flag.DurationVar(&o.restartMinInterval, "restart-min-interval", 5*time.Minute, "Least time between two restarts of one workload by restartOnRotation (a restart is never put off past halfway to the expiry of the credentials its pods hold).")
	flag.StringVar(&o.webhookCertMode, "webhook-cert-mode", "self-managed", "Serving certificate of the pod webhook: self-managed (the operator keeps a CA and certificate in --webhook-cert-secret, rotates them and updates the caBundle), cert-manager (files in --webhook-cert-dir, caBundle injected by cert-manager) or disabled (no webhook).")
	flag.StringVar(&o.sidecarImage, "sidecar-image", "ghcr.io/stsbind/stsbind:0.1.0", "Image of the Endpoint-mode sidecar: the operator's own image, which holds /credentials-server.")
	flag.IntVar(&o.sidecarPort, "sidecar-port", int(webhook.DefaultSidecarPort), "Loopback port the Endpoint-mode sidecar serves on in each pod.")
	// The sidecar follows the pod: it requests CPU or memory only when the
	// pod's containers do, and is limited to the same amount only when they
	// are limited, so a pod keeps its QoS class and its quota admission.
	flag.StringVar(&o.sidecarCPU, "sidecar-cpu-request", "5m", "CPU of the Endpoint-mode sidecar: its request when the pod's containers request CPU, and its limit when they are limited.")
	flag.StringVar(&o.sidecarMemory, "sidecar-memory", "16Mi", "Memory of the Endpoint-mode sidecar: its request when the pod's containers request memory, and its limit when they are limited.")
	flag.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "How long the operator keeps serving after SIGTERM, while the webhook Service's endpoints and kube-proxy let go of the pod, so that pods created meanwhile are still injected.")
	flag.StringVar(&o.webhookHost, "webhook-host", "", "Address the pod webhook listens on (default: all).")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port the pod webhook listens on.")
	flag.StringVar(&o.webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook's tls.crt and tls.key.")
	flag.StringVar(&o.webhookFailurePolicy, "webhook-failure-policy", "Ignore", "When the IAMRoleBindings of a pod cannot be looked up: Ignore admits it without credentials (Warning event, metric), Fail denies it.")
	flag.StringVar(&o.webhookCertSecret, "webhook-cert-secret", "stsbind-webhook-server-cert", "Secret, in the operator's namespace, of the self-managed certificate.")
	flag.StringVar(&o.webhookService, "webhook-service", "stsbind-webhook-service", "Service of the webhook, named in the self-managed certificate.")
	flag.StringVar(&o.webhookConfiguration, "webhook-configuration", "stsbind-mutating-webhook-configuration", "MutatingWebhookConfiguration whose caBundle the self-managed mode keeps current.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		setupLog.Error(err, "Failed to run the manager")
		os.Exit(1)
	}
}

func run(o options) error {
	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	tlsOpts = append(tlsOpts, func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 })

	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	// The cache and the webhook trim the entries and skip empty ones.
	watched := strings.Split(o.watchNamespaces, ",")
	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(o.kubeQPS), o.kubeBurst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "stsbind.stsbind.dev",
		LeaderElectionNamespace: o.leaderElectionNamespace,
		// The new leader starts at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         operator.CacheOptions(watched),
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: o.webhookHost, Port: o.webhookPort, CertDir: o.webhookCertDir, TLSOpts: tlsOpts,
		}),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	// The webhook keeps answering while the Service lets go of this pod.
	draining := &drain.Flag{}
	ctx := drain.After(ctrl.SetupSignalHandler(), o.shutdownDelay, clock.RealClock{}, func() {
		draining.Set()
		setupLog.Info("Stopping after the shutdown delay", "delay", o.shutdownDelay)
	})
	wh, err := webhookOptions(mgr, o, draining)
	if err != nil {
		return fmt.Errorf("setting up the pod webhook: %w", err)
	}
	if err := operator.Setup(ctx, mgr, operator.Options{
		DefaultProvider:         o.defaultProvider,
		DefaultRegion:           o.defaultRegion,
		OperatorNamespace:       o.operatorNamespace,
		ClusterName:             o.clusterName,
		Namespaces:              watched,
		MaxConcurrentReconciles: o.maxConcurrentReconciles,
		RestartMinInterval:      o.restartMinInterval,
		DisableRestarts:         !o.restartOnRotation,
		Webhook:                 wh,
	}); err != nil {
		return err
	}
	setupLog.Info("Starting the manager", "defaultProvider", o.defaultProvider, "defaultRegion", o.defaultRegion)
	return mgr.Start(ctx)
}

// sidecarOptions reads the Endpoint-mode sidecar flags.
func sidecarOptions(o options) (webhook.SidecarOptions, error) {
	cpu, err := resource.ParseQuantity(o.sidecarCPU)
	if err != nil {
		return webhook.SidecarOptions{}, fmt.Errorf("--sidecar-cpu-request: %w", err)
	}
	mem, err := resource.ParseQuantity(o.sidecarMemory)
	if err != nil {
		return webhook.SidecarOptions{}, fmt.Errorf("--sidecar-memory: %w", err)
	}
	if o.sidecarPort < 1 || o.sidecarPort > 65535 {
		return webhook.SidecarOptions{}, fmt.Errorf("--sidecar-port must be a port number, not %d", o.sidecarPort)
	}
	return webhook.SidecarOptions{
		Image:    o.sidecarImage,
		Port:     int32(o.sidecarPort),
		Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
	}, nil
}

// webhookOptions reads the webhook flags and, for self-managed certificates,
// adds the certificate rotator; nil options mean no webhook.
func webhookOptions(mgr ctrl.Manager, o options, draining *drain.Flag) (*operator.WebhookOptions, error) {
	policy := admissionregistrationv1.FailurePolicyType(o.webhookFailurePolicy)
	if policy != admissionregistrationv1.Ignore && policy != admissionregistrationv1.Fail {
		return nil, fmt.Errorf("--webhook-failure-policy must be Ignore or Fail, not %q", policy)
	}
	sidecar, err := sidecarOptions(o)
	if err != nil {
		return nil, err
	}
	w := &operator.WebhookOptions{FailurePolicy: policy, Sidecar: sidecar, Draining: draining}
	switch o.webhookCertMode {
	case "disabled":
		return nil, nil
	case "cert-manager":
		return w, nil
	case "self-managed":
		w.CertReady, err = webhook.AddCertRotator(mgr, webhook.CertOptions{
			Namespace:                os.Getenv("POD_NAMESPACE"),
			SecretName:               o.webhookCertSecret,
			ServiceName:              o.webhookService,
			WebhookConfigurationName: o.webhookConfiguration,
			CertDir:                  o.webhookCertDir,
		})
		if err != nil {
			return nil, err
		}
		return w, nil
	}
	return nil, fmt.Errorf("--webhook-cert-mode must be self-managed, cert-manager or disabled, not %q", o.webhookCertMode)
}
