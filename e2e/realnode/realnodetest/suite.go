// Package realnodetest is what the real-node test packages share: the node
// with the test images imported, MinIO verifying the node's tokens and
// reachable from pods, and helpers that run pods and read their logs.
package realnodetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/internal/stsclient"
	"github.com/stsbind/stsbind/internal/testrig/images"
	"github.com/stsbind/stsbind/internal/testrig/miniotest"
	"github.com/stsbind/stsbind/internal/testrig/node"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// Region is every binding's and provider's region.
const Region = "us-east-1"

// Suite is a running node with MinIO.
type Suite struct {
	Node      *node.Node
	Client    client.Client
	Clientset *kubernetes.Clientset
	MinIO     *miniotest.Server
	// S3URL is MinIO as pods (and the host) reach it: on the bridge address.
	S3URL string
	// Dir holds the built binaries (manager, credentials-server, s3client)
	// and the image tars.
	Dir string

	relay *node.Relay
	log   io.Writer
}

// Start builds the images while the node starts, imports them, and starts
// MinIO with a relay on the bridge. On error it has cleaned up.
func Start(ctx context.Context, opts node.Options) (s *Suite, err error) {
	if opts.Log == nil {
		opts.Log = os.Stdout
	}
	s = &Suite{log: opts.Log}
	defer func() {
		if err != nil {
			s.Stop()
			s = nil
		}
	}()
	if err := node.Preflight(); err != nil {
		return s, err
	}
	if s.Dir, err = os.MkdirTemp("", "stsbind-realnode-"); err != nil {
		return s, err
	}
	// The pause image is needed by the first pod only: build beside the start.
	t0 := time.Now()
	type built struct {
		tars map[string]string
		err  error
	}
	imagesDone := make(chan built, 1)
	go func() {
		tars, err := images.Build(ctx, testenv.RepoRoot(), s.Dir)
		imagesDone <- built{tars, err}
	}()
	s.Node, err = node.Start(ctx, opts)
	b := <-imagesDone
	if err != nil {
		return s, err
	}
	s.Client = s.Node.Client
	if s.Clientset, err = kubernetes.NewForConfig(s.Node.Config); err != nil {
		return s, err
	}
	fmt.Fprintf(s.log, "realnode: %s\n", s.Node.Describe())
	if b.err != nil {
		return s, b.err
	}
	t1 := time.Now()
	var tars []string
	for _, t := range b.tars {
		tars = append(tars, t)
	}
	if err := s.Node.ImportImages(tars...); err != nil {
		return s, err
	}
	fmt.Fprintf(s.log, "realnode: images built in %s (beside the node start), imported in %s\n",
		t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))

	t0 = time.Now()
	if s.MinIO, err = miniotest.Start(ctx, miniotest.Options{RepoRoot: testenv.RepoRoot(), IssuerURL: s.Node.IssuerURL, CAData: s.Node.CA.CertPEM}); err != nil {
		return s, err
	}
	u, err := url.Parse(s.MinIO.Endpoint)
	if err != nil {
		return s, err
	}
	if s.relay, err = s.Node.NewRelay(u.Host); err != nil {
		return s, err
	}
	s.S3URL = "http://" + s.relay.Addr()
	if err := s.waitForSTS(ctx); err != nil {
		return s, fmt.Errorf("%w\nminio output:\n%s", err, s.MinIO.Output())
	}
	fmt.Fprintf(s.log, "realnode: MinIO STS answering in %s, role %s, pods reach it at %s\n",
		time.Since(t0).Round(time.Millisecond), s.MinIO.RoleARN, s.S3URL)
	return s, nil
}

// Stop stops MinIO and the node and removes the build dir.
func (s *Suite) Stop() error {
	if s == nil {
		return nil
	}
	var errs []error
	if s.relay != nil {
		s.relay.Close()
	}
	if s.MinIO != nil {
		s.MinIO.Stop()
	}
	if s.Node != nil {
		errs = append(errs, s.Node.Stop())
	}
	if s.Dir != "" {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	return errors.Join(errs...)
}

// DumpLogs prints the ends of the node's logs, for a failed run.
func (s *Suite) DumpLogs(w io.Writer) {
	if s == nil || s.Node == nil {
		return
	}
	for _, name := range []string{"kubelet", "containerd", "kube-apiserver"} {
		fmt.Fprintf(w, "--- %s log (tail)\n%s\n", name, s.Node.LogTail(name, 40))
	}
}

// waitForSTS exchanges a real token of the node until MinIO answers: it
// logs its role before its policies are loaded.
func (s *Suite) waitForSTS(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "realnode-probe"}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "probe"}}
	for _, o := range []client.Object{ns, sa} {
		if err := s.Client.Create(ctx, o); err != nil {
			return err
		}
	}
	defer func() { _ = s.Client.Delete(context.Background(), ns) }()
	sts := stsclient.New(stsclient.Options{})
	var lastErr error
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)}}
		if err := s.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
			return err
		}
		if _, lastErr = sts.AssumeRoleWithWebIdentity(ctx, stsclient.Request{
			Provider: stsclient.Provider{Name: "probe", Region: Region, Endpoint: s.MinIO.Endpoint, Timeout: 5 * time.Second},
			RoleARN:  s.MinIO.RoleARN, SessionName: "probe", Token: tr.Status.Token, Duration: time.Hour,
		}); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("MinIO STS never accepted a token of the node: %w", lastErr)
}
