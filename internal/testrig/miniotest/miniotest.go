// Package miniotest runs a MinIO server on 127.0.0.1 as an independent STS and
// S3 for tests and the demo. MinIO verifies ServiceAccount tokens against the
// API server's OIDC discovery document, so the whole token path is real.
//
// The binary comes from hack/minio.sh (built from the Go module proxy and
// cached); MinIO is AGPL and is never imported by this module.
package miniotest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// Options configure the server.
type Options struct {
	// Binary is the minio executable; default: the output of hack/minio.sh.
	Binary string
	// RepoRoot locates hack/minio.sh when Binary is empty.
	RepoRoot string
	// IssuerURL is the API server's ServiceAccount issuer.
	IssuerURL string
	// CAData is the PEM CA that signed the API server's serving certificate.
	CAData []byte
	// ClientID is the audience MinIO accepts; default sts.amazonaws.com.
	ClientID string
}

// Server is a running MinIO.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT, for STS and S3 alike.
	Endpoint string
	// RoleARN is the role MinIO derived from its OpenID configuration.
	RoleARN      string
	RootUser     string
	RootPassword string

	cmd  *exec.Cmd
	dir  string
	out  *testenv.SyncBuffer
	done chan struct{}
}

var roleARNPattern = regexp.MustCompile(`arn:minio:iam:::role/[A-Za-z0-9_-]+`)

// Binary returns the MinIO executable, building it when it is not cached.
func Binary(repoRoot string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "minio.sh"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/minio.sh: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// Start starts MinIO and waits until it is healthy and has logged its role ARN.
// Callers that need STS to work must still wait for a successful call: MinIO
// logs the role before its policies are loaded.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Binary == "" {
		bin, err := Binary(o.RepoRoot)
		if err != nil {
			return nil, err
		}
		o.Binary = bin
	}
	if o.ClientID == "" {
		o.ClientID = "sts.amazonaws.com"
	}
	dir, err := os.MkdirTemp("", "stsbind-minio-")
	if err != nil {
		return nil, err
	}
	// MinIO has no variable for extra roots: the API server's CA goes into
	// --certs-dir/CAs, or MinIO retries its OpenID setup forever.
	certs := filepath.Join(dir, "certs")
	if err := os.MkdirAll(filepath.Join(certs, "CAs"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certs, "CAs", "kube-apiserver.crt"), o.CAData, 0o600); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:     fmt.Sprintf("http://127.0.0.1:%d", port),
		RootUser:     "stsbind-root",
		RootPassword: "stsbind-root-password",
		dir:          dir,
		out:          &testenv.SyncBuffer{},
		done:         make(chan struct{}),
	}
	s.cmd = exec.Command(o.Binary, "server", "--address", fmt.Sprintf("127.0.0.1:%d", port),
		"--certs-dir", certs, filepath.Join(dir, "data"))
	s.cmd.Env = []string{
		"HOME=" + dir,
		"PATH=/usr/bin:/bin",
		"MINIO_ROOT_USER=" + s.RootUser,
		"MINIO_ROOT_PASSWORD=" + s.RootPassword,
		"MINIO_IDENTITY_OPENID_CONFIG_URL=" + strings.TrimSuffix(o.IssuerURL, "/") + "/.well-known/openid-configuration",
		"MINIO_IDENTITY_OPENID_CLIENT_ID=" + o.ClientID,
		"MINIO_IDENTITY_OPENID_ROLE_POLICY=readwrite",
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	// MinIO dies with the test or demo process, however that ends.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting minio: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("minio exited:\n%s", s.out.String())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if s.RoleARN == "" {
			s.RoleARN = roleARNPattern.FindString(s.out.String())
		}
		if s.RoleARN != "" && healthy(s.Endpoint) {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("minio not ready after 60s (role ARN %q); output:\n%s", s.RoleARN, s.out.String())
		}
	}
}

func healthy(endpoint string) bool {
	resp, err := http.Get(endpoint + "/minio/health/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Output is what MinIO printed so far.
func (s *Server) Output() string { return s.out.String() }

// Stop ends MinIO and removes its data.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = os.RemoveAll(s.dir)
}
