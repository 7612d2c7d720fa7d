package clients

import (
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/stsbind/stsbind/internal/testrig/podview"
)

// guard is an HTTP proxy on loopback that refuses every request and
// records where it was for. A WebIdentity client that ignores
// AWS_ENDPOINT_URL_STS would send its token to AWS STS; behind the guard it
// asks the proxy instead (HTTPS_PROXY; loopback stays direct through
// NO_PROXY), so nothing leaves the machine, not even a DNS query. Every
// client of the matrix honours these variables (Node.js ignores them; the
// JavaScript SDK reaches only loopback here).
type guard struct {
	url   string
	mu    sync.Mutex
	hosts []string
}

func startGuard(t *testing.T) *guard {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &guard{url: "http://" + l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		if !slices.Contains(g.hosts, r.Host) {
			g.hosts = append(g.hosts, r.Host)
		}
		g.mu.Unlock()
		http.Error(w, "stsbind client matrix: nothing leaves this machine", http.StatusForbidden)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return g
}

// view is the app container's view with every request that would leave
// loopback sent to the guard.
func (g *guard) view(app *podview.View) *podview.View {
	env := slices.Clone(app.Env)
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		env = append(env, k+"="+g.url)
	}
	return &podview.View{Env: append(env, "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")}
}
