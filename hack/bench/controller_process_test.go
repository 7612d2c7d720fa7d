package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// The controller under test is the stsbind binary, built from the
// repository as the image builds it and run as its own process against
// envtest's API server: its RSS is its own, and it is set up by main.go, not
// by a copy of main.go in the harness. It runs as controllerUser, which
// holds only the ClusterRole generated from the RBAC markers; the API
// server's audit log records that user's requests, and only those (see
// audit_test.go).

// controllerUser is the user the controller binary authenticates as.
const controllerUser = "stsbind-bench-controller"

// buildController builds the stsbind binary into dir, with the flags of the
// Dockerfile.
func buildController(tb testing.TB, dir string) string {
	bin := filepath.Join(dir, "stsbind")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building the stsbind binary: %v\n%s", err, out)
	}
	return bin
}

// controllerKubeconfig writes a kubeconfig for controllerUser, bound to the
// generated ClusterRole (config/rbac/role.yaml), into dir.
func controllerKubeconfig(ctx context.Context, tb testing.TB, env *testenv.Env, dir string) string {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		tb.Fatal(err)
	}
	role.Name = controllerUser
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: controllerUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: controllerUser}},
	}
	if err := env.Client.Create(ctx, &role); err != nil {
		tb.Fatal(err)
	}
	if err := env.Client.Create(ctx, binding); err != nil {
		tb.Fatal(err)
	}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: controllerUser}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// controllerProcess is one run of the stsbind binary.
type controllerProcess struct {
	cmd     *exec.Cmd
	metrics string // URL of its metrics endpoint
	pprof   string // URL of its pprof endpoints
	logPath string
	exited  chan struct{}
	err     error // after exited
}

// startController runs the binary with main.go's flags for a controller
// without webhook or leader election, serving plain-HTTP metrics on
// loopback so the harness can see it reconcile.
func (s *scaleRun) startController(name string) *controllerProcess {
	port, err := testenv.FreePort()
	if err != nil {
		s.tb.Fatal(err)
	}
	pprofPort, err := testenv.FreePort()
	if err != nil {
		s.tb.Fatal(err)
	}
	p := &controllerProcess{
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port),
		pprof:   fmt.Sprintf("http://127.0.0.1:%d/debug/pprof", pprofPort),
		logPath: filepath.Join(s.dir, name+".log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		s.tb.Fatal(err)
	}
	p.cmd = exec.Command(s.bin,
		"--kubeconfig", s.kubeconfig,
		"--leader-elect=false",
		"--webhook-cert-mode=disabled",
		"--health-probe-bind-address=0",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port),
		"--metrics-secure=false",
		fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pprofPort),
		"--shutdown-delay=0s",
		"--default-provider", benchProvider,
		"--operator-namespace", "stsbind-system",
		fmt.Sprintf("--kube-api-qps=%g", s.cfg.KubeQPS),
		fmt.Sprintf("--kube-api-burst=%d", s.cfg.KubeBurst),
		fmt.Sprintf("--max-concurrent-reconciles=%d", s.cfg.MaxConcurrentRecon),
	)
	// The controller's GOMEMLIMIT is the run's, never the harness's.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	if s.cfg.GoMemLimit != "" {
		p.cmd.Env = append(p.cmd.Env, "GOMEMLIMIT="+s.cfg.GoMemLimit)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p
}

// stop sends SIGTERM, as the kubelet does, and waits for the process to end.
func (p *controllerProcess) stop(tb testing.TB) {
	select {
	case <-p.exited:
		tb.Fatalf("the controller had already stopped: %v\n%s", p.err, p.logTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		tb.Fatalf("the controller did not stop within a minute of SIGTERM\n%s", p.logTail())
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		tb.Fatalf("controller: %v", p.err)
	}
	if p.err != nil {
		tb.Fatalf("the controller exited with %v\n%s", p.err, p.logTail())
	}
}

// kill ends the process whatever state it is in (cleanup after a failure).
func (p *controllerProcess) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive fails the run if the controller has exited.
func (p *controllerProcess) alive(tb testing.TB) {
	select {
	case <-p.exited:
		tb.Fatalf("the controller exited: %v\n%s", p.err, p.logTail())
	default:
	}
}

func (p *controllerProcess) logTail() string {
	raw, _ := os.ReadFile(p.logPath)
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}

// profileDir is where the run's profiles go: $STSBIND_BENCH_PROFILES, or
// "" for none. Read them with go tool pprof.
func profileDir() string { return os.Getenv("STSBIND_BENCH_PROFILES") }

// saveHeapProfile writes the controller's heap profile, after a GC, to
// <profileDir>/<name>.pprof (-sample_index=inuse_space: what it holds).
func (p *controllerProcess) saveHeapProfile(ctx context.Context, tb testing.TB, name string) {
	if profileDir() != "" {
		saveProfile(ctx, tb, http.DefaultClient, p.pprof+"/heap?gc=1", name)
	}
}

// saveProfile GETs a pprof endpoint and writes the answer to
// <profileDir>/<name>.pprof.
func saveProfile(ctx context.Context, tb testing.TB, c *http.Client, url, name string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		tb.Error(err)
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Errorf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Errorf("profile %s: %s", name, resp.Status)
		return
	}
	if err := os.MkdirAll(profileDir(), 0o755); err != nil {
		tb.Error(err)
		return
	}
	f, err := os.Create(filepath.Join(profileDir(), name+".pprof"))
	if err != nil {
		tb.Error(err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		tb.Error(err)
	}
}

// processMemory is what /proc/<pid>/status says of a process's memory.
type processMemory struct {
	Peak    int64 // VmHWM: the most resident memory since the process started
	Current int64 // VmRSS
	Anon    int64 // RssAnon: of Current, the heap, stacks and runtime
	File    int64 // RssFile: of Current, the binary's pages
}

func (p *controllerProcess) memory(tb testing.TB) processMemory {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var m processMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		field, value, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch field {
		case "VmHWM":
			m.Peak = kb << 10
		case "VmRSS":
			m.Current = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	if m.Peak == 0 {
		tb.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	}
	return m
}

// scrape reads the controller's metrics endpoint and sums, for each name
// given, the samples whose labels include every label="value" of match.
func (p *controllerProcess) scrape(ctx context.Context, match string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", p.metrics, resp.Status)
	}
	return sumSamples(resp.Body, match, names...)
}

// goMemory sums up the Go runtime's memory statistics from the metrics
// endpoint: where the RSS goes (heap in use, heap kept but free, stacks,
// the GC's next target).
func (p *controllerProcess) goMemory(ctx context.Context) string {
	names := []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes", "go_gc_gomemlimit_bytes"}
	m, err := p.scrape(ctx, "", names...)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %.0f MiB, ", strings.TrimPrefix(strings.TrimSuffix(n, "_bytes"), "go_memstats_"), m[n]/(1<<20))
	}
	return strings.TrimSuffix(b.String(), ", ")
}

// sumSamples reads the Prometheus text format.
func sumSamples(r io.Reader, match string, names ...string) (map[string]float64, error) {
	sums := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		for _, want := range names {
			if name != want || !strings.Contains(labels, match) {
				continue
			}
			v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
			if err != nil {
				return nil, fmt.Errorf("metric %s: %w", line, err)
			}
			sums[name] += v
		}
	}
	return sums, sc.Err()
}
