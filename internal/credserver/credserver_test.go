package credserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"

	"github.com/stsbind/stsbind/internal/credentials"
)

var now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func creds(key string, exp time.Time) credentials.Credentials {
	return credentials.Credentials{AccessKeyID: key, SecretAccessKey: "secret-" + key, SessionToken: "token-" + key, Expiration: exp}
}

// mount writes a binding's Secret as kubelet would.
func mount(t *testing.T, dir, binding string, c credentials.Credentials) {
	t.Helper()
	d := filepath.Join(dir, binding)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range credentials.SecretData(c, "us-east-1", binding) {
		if err := os.WriteFile(filepath.Join(d, k), v, 0o444); err != nil {
			t.Fatal(err)
		}
	}
}

func newServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := &Server{Dir: t.TempDir(), Token: "pod-token", Bindings: []string{"good"}, Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mount(t, s.Dir, "good", creds("AKIDGOOD", now.Add(time.Hour)))
	mount(t, s.Dir, "expired", creds("AKIDOLD", now.Add(-time.Minute)))
	if err := os.MkdirAll(filepath.Join(s.Dir, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "broken", credentials.KeyProcessJSON), []byte("{"), 0o444); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func TestServeCredentials(t *testing.T) {
	t.Parallel()
	_, ts := newServer(t)
	tests := map[string]struct {
		path, auth string
		method     string
		wantStatus int
		wantCode   string
	}{
		"valid":           {path: "/credentials/good", auth: "pod-token", wantStatus: 200},
		"no token":        {path: "/credentials/good", wantStatus: 401, wantCode: "Unauthorized"},
		"wrong token":     {path: "/credentials/good", auth: "other", wantStatus: 401, wantCode: "Unauthorized"},
		"bearer prefix":   {path: "/credentials/good", auth: "Bearer pod-token", wantStatus: 401, wantCode: "Unauthorized"},
		"unknown binding": {path: "/credentials/none", auth: "pod-token", wantStatus: 404, wantCode: "NotFound"},
		"path traversal":  {path: "/credentials/..%2Fgood", auth: "pod-token", wantStatus: 404, wantCode: "NotFound"},
		"other path":      {path: "/latest/meta-data/", auth: "pod-token", wantStatus: 404, wantCode: "NotFound"},
		"expired":         {path: "/credentials/expired", auth: "pod-token", wantStatus: 503, wantCode: "Expired"},
		"malformed file":  {path: "/credentials/broken", auth: "pod-token", wantStatus: 503, wantCode: "Unavailable"},
		"post not served": {path: "/credentials/good", auth: "pod-token", method: http.MethodPost, wantStatus: 404, wantCode: "NotFound"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, ts.URL+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.wantStatus == 200 {
				var got map[string]string
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"AccessKeyId": "AKIDGOOD", "SecretAccessKey": "secret-AKIDGOOD", "Token": "token-AKIDGOOD", "Expiration": "2026-11-22T11:00:00Z"}
				if len(got) != len(want) {
					t.Errorf("fields %v, want exactly %v", got, want)
				}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("%s = %q, want %q", k, got[k], v)
					}
				}
				return
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.wantCode || e.Message == "" {
				t.Errorf("error body %s, want code %s with a message", body, tc.wantCode)
			}
			if strings.Contains(string(body), "secret-") || strings.Contains(string(body), "token-") {
				t.Errorf("an error answer carries credential material: %s", body)
			}
		})
	}
}

// TestSDKReadsRotatedCredentials uses the Go SDK's own container-credentials
// provider: it reads what the sidecar serves, and a rotated file is served
// on the next request without a restart.
func TestSDKReadsRotatedCredentials(t *testing.T) {
	t.Parallel()
	s, ts := newServer(t)
	s.Now = time.Now
	mount(t, s.Dir, "rotating", creds("AKIDFIRST", time.Now().Add(time.Hour)))
	provider := endpointcreds.New(ts.URL+"/credentials/rotating", func(o *endpointcreds.Options) { o.AuthorizationToken = "pod-token" })
	got, err := provider.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessKeyID != "AKIDFIRST" || got.SessionToken != "token-AKIDFIRST" || !got.CanExpire {
		t.Fatalf("SDK read %s / session token %q / CanExpire %v", got.AccessKeyID, got.SessionToken, got.CanExpire)
	}
	mount(t, s.Dir, "rotating", creds("AKIDSECOND", time.Now().Add(2*time.Hour)))
	got, err = provider.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessKeyID != "AKIDSECOND" {
		t.Fatalf("after rotation the SDK read %s", got.AccessKeyID)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	s, ts := newServer(t)
	get := func() int {
		resp, err := http.Get(ts.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(); got != 200 {
		t.Errorf("healthz with valid credentials = %d", got)
	}
	s.Bindings = []string{"good", "expired"}
	if got := get(); got != 503 {
		t.Errorf("healthz with an expired binding = %d", got)
	}
	s.Bindings = []string{"not-mounted-yet"}
	if got := get(); got != 503 {
		t.Errorf("healthz before the Secret is mounted = %d", got)
	}
}
