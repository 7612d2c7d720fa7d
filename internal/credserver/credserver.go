// Package credserver is the Endpoint-mode sidecar: it serves the
// container-credentials API that every AWS SDK and the AWS CLI poll before
// their credentials expire, from the binding Secrets mounted into the sidecar.
// It reads the mounted files on every request, so a Secret that kubelet
// updated is served at once, and it needs nothing in the application's image.
package credserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stsbind/stsbind/internal/credentials"
)

// Subcommand is the operator binary's argument that runs the sidecar.
const Subcommand = "credentials-server"

// EnvAuthToken carries the per-pod token the sidecar requires in the
// Authorization header; the webhook sets the same value in
// AWS_CONTAINER_AUTHORIZATION_TOKEN of the application containers.
const EnvAuthToken = "STSBIND_AUTHORIZATION_TOKEN"

// PathPrefix is where a binding's credentials are served: PathPrefix + binding.
const PathPrefix = "/credentials/"

// Server answers container-credentials requests.
type Server struct {
	// Dir holds one directory per binding, each with credentials.json.
	Dir string
	// Token is the required Authorization header value.
	Token string
	// Bindings must all hold valid credentials for /healthz to pass.
	Bindings []string
	Now      func() time.Time
	Log      *slog.Logger
}

// response is the container-credentials format. The field names are exact:
// the Go SDK silently ignores SessionToken and then fails to sign.
type response struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Handler routes /credentials/<binding> and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+"{binding}", s.serveCredentials)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", "serving only GET "+PathPrefix+"<binding> and /healthz")
	})
	return mux
}

func (s *Server) serveCredentials(w http.ResponseWriter, r *http.Request) {
	got := r.Header.Get("Authorization")
	if s.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
		s.Log.Info("Refused a credentials request without the pod's token", "path", r.URL.Path)
		writeError(w, http.StatusUnauthorized, "Unauthorized", "the Authorization header must carry the pod's AWS_CONTAINER_AUTHORIZATION_TOKEN")
		return
	}
	binding := r.PathValue("binding")
	c, err := s.read(binding)
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no credentials mounted for binding %q", binding))
		return
	}
	if err != nil {
		s.Log.Info("Could not serve credentials", "binding", binding, "error", err.Error())
		writeError(w, http.StatusServiceUnavailable, "Unavailable", err.Error())
		return
	}
	if !c.Valid(s.Now()) {
		writeError(w, http.StatusServiceUnavailable, "Expired",
			fmt.Sprintf("the credentials of binding %q expired at %s; see the IAMRoleBinding's status", binding, c.Expiration.Format(time.RFC3339)))
		return
	}
	s.Log.Info("Served credentials", "binding", binding, "expiration", c.Expiration.Format(time.RFC3339))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(response{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		Token:           c.SessionToken,
		Expiration:      c.Expiration.UTC().Format(time.RFC3339),
	})
}

// serveHealth is the startup probe: ready once every binding has valid
// credentials, so that later init containers already find them.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	for _, b := range s.Bindings {
		c, err := s.read(b)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "Unavailable", err.Error())
			return
		}
		if !c.Valid(s.Now()) {
			writeError(w, http.StatusServiceUnavailable, "Expired", fmt.Sprintf("credentials of binding %q expired", b))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

func (s *Server) read(binding string) (credentials.Credentials, error) {
	if binding == "" || binding == "." || binding == ".." || strings.ContainsAny(binding, `/\`) {
		return credentials.Credentials{}, fmt.Errorf("binding %q: %w", binding, os.ErrNotExist)
	}
	raw, err := os.ReadFile(filepath.Join(s.Dir, binding, credentials.KeyProcessJSON))
	if err != nil {
		return credentials.Credentials{}, err
	}
	return credentials.FromProcessJSON(raw)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: code, Message: msg})
}

// Main runs the sidecar until SIGTERM; it returns the process exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet(Subcommand, flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:9911", "Address to serve on; loopback only, as the SDKs require.")
	dir := fs.String("dir", credentials.MountRoot, "Directory with one mounted Secret per binding.")
	probe := fs.Bool("probe", false, "Ask the server at --listen for /healthz and exit 0 when healthy: the startup probe, for images without a shell or curl.")
	var bindings stringList
	fs.Var(&bindings, "binding", "A binding whose credentials must be valid for /healthz (repeatable).")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *probe {
		return probeHealth(*addr, log)
	}
	token := os.Getenv(EnvAuthToken)
	if token == "" {
		log.Error("Refusing to start without the pod's token", "variable", EnvAuthToken)
		return 2
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("Could not listen", "address", *addr, "error", err.Error())
		return 1
	}
	s := &Server{Dir: *dir, Token: token, Bindings: bindings, Now: time.Now, Log: log}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Info("Serving container credentials", "address", l.Addr().String(), "dir", *dir, "bindings", []string(bindings))
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("Server failed", "error", err.Error())
		return 1
	}
	return 0
}

// probeHealth is the exec startup probe: kubelet's HTTP probes reach the pod
// IP, and the server listens on loopback only.
func probeHealth(addr string, log *slog.Logger) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		log.Error("Probe failed", "error", err.Error())
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		log.Error("Not healthy", "status", resp.StatusCode, "body", string(body))
		return 1
	}
	return 0
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
