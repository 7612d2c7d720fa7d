// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// stsbind CRDs installed, for the integration tests of every package.
//
// The binaries come from $KUBEBUILDER_ASSETS, else from hack/envtest-assets.sh,
// which reuses the copy in the user cache dir or builds one from the Go module
// proxy. A missing binary is a failure, never a skip.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// Env is a running control plane.
type Env struct {
	*envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *k8sruntime.Scheme
	// IssuerURL is the ServiceAccount token issuer, with OIDCIssuer.
	IssuerURL string
}

// Options tune the control plane.
type Options struct {
	// APIServerArgs are extra kube-apiserver flags, "--name" => value.
	APIServerArgs map[string]string
	// Webhook installs the webhook configuration from config/webhook.
	Webhook bool
	// OIDCIssuer makes the API server a usable OIDC issuer for an outside STS:
	// issuer and JWKS URI on a port chosen up front, and anonymous access to
	// the discovery document and keys.
	OIDCIssuer bool
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Assets returns the directory with kube-apiserver, etcd and kubectl.
func Assets() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "envtest-assets.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/envtest-assets.sh: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// Scheme has the built-in types and stsbind's.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := stsbindv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Start starts the control plane. Stop it with Env.Stop.
func Start(opts Options) (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	root := RepoRoot()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if opts.Webhook {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:                    []string{filepath.Join(root, "config", "webhook")},
			IgnoreErrorIfPathMissing: false,
		}
	}
	apiServer := env.ControlPlane.GetAPIServer()
	args := apiServer.Configure()
	issuer := ""
	if opts.OIDCIssuer {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		apiServer.SecureServing.Address = "127.0.0.1"
		apiServer.SecureServing.Port = strconv.Itoa(port)
		issuer = fmt.Sprintf("https://127.0.0.1:%d", port)
		args.Set("service-account-issuer", issuer)
		// Without it, discovery advertises the host's other address.
		args.Set("service-account-jwks-uri", issuer+"/openid/v1/jwks")
	}
	for k, v := range opts.APIServerArgs {
		args.Set(strings.TrimPrefix(k, "--"), v)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest from %s: %w", assets, err)
	}
	s := Scheme()
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	e := &Env{Environment: env, Config: cfg, Client: c, Scheme: s, IssuerURL: issuer}
	if opts.OIDCIssuer {
		if err := allowAnonymousDiscovery(c); err != nil {
			_ = env.Stop()
			return nil, err
		}
	}
	return e, nil
}

// allowAnonymousDiscovery lets anyone read the issuer's discovery document and
// keys, as a real cluster's issuer publishes them to its STS.
func allowAnonymousDiscovery(c client.Client) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "stsbind-test-anonymous-oidc-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
	}
	if err := c.Create(context.Background(), crb); err != nil {
		return fmt.Errorf("allowing anonymous OIDC discovery: %w", err)
	}
	return nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SyncBuffer collects output from several goroutines: a captured log, a child
// process's stdout and stderr.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
