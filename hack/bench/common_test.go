package bench

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// scale returns STSBIND_BENCH_SCALE as a number, 0 when unset (tiny runs).
func scale(tb testing.TB) int {
	v := os.Getenv("STSBIND_BENCH_SCALE")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("STSBIND_BENCH_SCALE=%q: want a positive number of bindings", v)
	}
	return n
}

// envFloat reads a numeric knob of the harness, def when unset.
func envFloat(tb testing.TB, name string, def float64) float64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		tb.Fatalf("%s=%q: %v", name, v, err)
	}
	return f
}

// envDuration reads a duration knob of the harness, def when unset.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		tb.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// peakRSS is VmHWM of this process in bytes: the controller, the webhook and
// the harness all run in the test process, so it bounds each of them.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS returns the heap to the OS and resets VmHWM to the current
// RSS (Linux clear_refs "5"), so that the next peakRSS is a phase's own. It
// returns the RSS after the reset.
func resetPeakRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return peakRSS()
}

// apiCounter counts the requests a manager sends to the API server, by verb
// and resource, at the transport: nothing the controller does escapes it
// (cached client, API reader, event recorder, watches).
type apiCounter struct {
	mu     sync.Mutex
	counts map[string]int
	total  atomic.Int64
}

func newAPICounter() *apiCounter { return &apiCounter{counts: map[string]int{}} }

func (c *apiCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		key := verb(r) + " " + resource(r.URL.Path)
		c.mu.Lock()
		c.counts[key]++
		c.mu.Unlock()
		c.total.Add(1)
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// snapshot returns the counts so far and resets them.
func (c *apiCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

func verb(r *http.Request) string {
	switch r.Method {
	case http.MethodGet:
		if r.URL.Query().Get("watch") == "true" {
			return "WATCH"
		}
		return "GET"
	default:
		return r.Method
	}
}

// resource turns /api/v1/namespaces/ns/secrets/name into "secrets" and
// .../serviceaccounts/name/token into "serviceaccounts/token".
func resource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// Drop the group/version prefix: api/v1 or apis/group/version.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "?"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}

// writes sums the non-read verbs of a snapshot.
func writes(counts map[string]int, res string) int {
	n := 0
	for k, v := range counts {
		verb, r, _ := strings.Cut(k, " ")
		if verb == "GET" || verb == "WATCH" {
			continue
		}
		if res == "" || r == res {
			n += v
		}
	}
	return n
}

// TestMain installs the logger main.go installs (production zap, info level),
// writing to nowhere: without one, controller-runtime's delegating logger
// keeps every per-request logger it hands out, and the harness would measure
// that leak instead of the webhook.
func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	os.Exit(m.Run())
}
