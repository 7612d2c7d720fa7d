package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// TestRestartOnRotation: the first credentials restart nothing; a rotation
// restarts the Deployment and the StatefulSet whose pods read the Secret
// into variables, once each, with the new credentials' identity in their pod
// templates, not a time; a Deployment of the same ServiceAccount whose pods
// do not read the Secret, and a bare pod, are not restarted (the bare pod is
// reported). A reconcile without a rotation writes nothing.
func TestRestartOnRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	web := f.deployment("web", f.sa, f.sa, "env")
	db := f.statefulSet("db", f.sa, "env")
	files := f.deployment("files", f.sa, f.sa, "")
	f.create(envPod(f.ns, "loner", f.sa, "env"))
	f.envBinding("env", nil)
	f.waitReady("env", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	first := f.credentialsID("env")
	f.waitRestartStatus("env", nil)
	for _, o := range []client.Object{web, db, files} {
		if got := f.annotation(o, "env"); got != "" {
			t.Errorf("%s restarted for the first credentials: %q", o.GetName(), got)
		}
	}

	second := f.rotate("env", "2h")
	b := f.waitRestartStatus("env", func(st *stsbindv1.RestartStatus) (bool, string) {
		for _, w := range []string{"Deployment/web", "StatefulSet/db"} {
			kind, name, _ := strings.Cut(w, "/")
			if e := entry(st, kind, name); e == nil || e.Credentials != st.Credentials || e.LastRestartTime == nil {
				return false, fmt.Sprintf("%s: %+v", w, e)
			}
		}
		return true, ""
	})
	if second == first {
		t.Fatal("the rotation kept the data hash")
	}
	for _, o := range []client.Object{web, db} {
		if got := f.annotation(o, "env"); got != second {
			t.Errorf("%s template annotation %q, want %q", o.GetName(), got, second)
		}
	}
	if got := f.annotation(files, "env"); got != "" {
		t.Errorf("the Deployment whose pods do not read the Secret was restarted: %q", got)
	}
	if len(b.Status.Restart.Workloads) != 2 {
		t.Errorf("status lists %+v", b.Status.Restart.Workloads)
	}
	// Both controllers write the binding's status; the round waits for the
	// credential controller's record of the refresh, which is not lost.
	issued := f.secret("env").Annotations[stsbindv1.AnnotationIssuedAt]
	if b.Status.LastRefreshTime == nil || b.Status.LastRefreshTime.UTC().Format(time.RFC3339) != issued {
		t.Errorf("status.lastRefreshTime %v, the Secret was issued at %s", b.Status.LastRefreshTime, issued)
	}
	ev := f.waitEvent("env", corev1.EventTypeNormal, stsbindv1.ReasonRolloutRestarted)
	if ev.Related == nil || (ev.Related.Name != "web" && ev.Related.Name != "db") {
		t.Errorf("RolloutRestarted event without the workload: %+v", ev.Related)
	}
	if ev := f.waitEvent("env", corev1.EventTypeWarning, stsbindv1.ReasonPodsNotRestartable); !strings.Contains(ev.Note, "loner") {
		t.Errorf("PodsNotRestartable does not name the bare pod: %s", ev.Note)
	}

	// A spec change that leaves the credentials alone reconciles the
	// binding again; nothing is restarted, nothing even patched.
	var cur stsbindv1.IAMRoleBinding
	if err := f.get(&cur, "env"); err != nil {
		t.Fatal(err)
	}
	checked := strings.Count(logs.String(), "Checked IAMRoleBinding restarts")
	f.update(&cur, func(s *stsbindv1.IAMRoleBindingSpec) { s.Injection.Containers = []string{"app"} })
	eventually(t, 15*time.Second, func() (bool, string) {
		return strings.Count(logs.String(), "Checked IAMRoleBinding restarts") > checked, "no reconcile after the spec change"
	})
	for _, o := range []client.Object{web, db} {
		if n := workloadPatches.get(f.ns + "/" + o.GetName()); n != 1 {
			t.Errorf("%s patched %d times for one rotation", o.GetName(), n)
		}
	}
	if n := workloadPatches.get(f.ns + "/files"); n != 0 {
		t.Errorf("files patched %d times", n)
	}
}

// TestRestartTwoQuickRotations (VSO #1228): two rotations a second apart
// give two different template values, so the second restart is not
// skipped. It waits for the minimum interval (an hour here), but not past
// halfway to the expiry of the credentials the pods got from the first
// restart (30 s here), so it comes before they expire.
func TestRestartTwoQuickRotations(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	web := f.deployment("web", f.sa, f.sa, "quick")
	f.envBinding("quick", nil)
	f.waitReady("quick", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	f.waitRestartStatus("quick", nil)

	fake.SetLifetime(f.role, 30*time.Second)
	second := f.rotate("quick", "2h")
	heldExpiry, err := time.Parse(time.RFC3339, f.secret("quick").Annotations[stsbindv1.AnnotationExpiration])
	if err != nil {
		t.Fatal(err)
	}
	fake.SetLifetime(f.role, 0)
	var firstRestart time.Time
	f.waitRestartStatus("quick", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "web")
		if e == nil || e.Credentials != second || e.LastRestartTime == nil {
			return false, fmt.Sprintf("web: %+v", e)
		}
		firstRestart = e.LastRestartTime.Time
		return true, ""
	})
	third := f.rotate("quick", "3h")
	if third == second {
		t.Fatal("two rotations gave one identity")
	}
	f.waitEvent("quick", corev1.EventTypeNormal, stsbindv1.ReasonRolloutDeferred)
	b := f.waitRestartStatus("quick", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "web")
		if e == nil || e.Credentials != third || e.NextRestartTime != nil {
			return false, fmt.Sprintf("web: %+v", e)
		}
		return true, ""
	})
	if got := f.annotation(web, "quick"); got != third {
		t.Errorf("template annotation %q, want %q", got, third)
	}
	last := entry(b.Status.Restart, "Deployment", "web").LastRestartTime.Time
	if !last.After(firstRestart) || !last.Before(heldExpiry) {
		t.Errorf("second restart at %s: want after the first (%s) and before the held credentials expire (%s)", last, firstRestart, heldExpiry)
	}
	t.Logf("second restart %s after the first; the held credentials had %s left",
		last.Sub(firstRestart), heldExpiry.Sub(last))
	if n := workloadPatches.get(f.ns + "/web"); n != 2 {
		t.Errorf("web patched %d times for two rotations", n)
	}
}

// TestRestartOnlyWhatUsesTheBinding attacks as a tenant: a pod that reads
// the Secret and names a ReplicaSet of a Deployment whose pods run as
// another ServiceAccount; a pod naming a ReplicaSet with a wrong UID; a
// Deployment whose pods read the Secret by hand as another ServiceAccount;
// and the same Deployment in another namespace. Only the binding's own
// Deployment (the control) is restarted.
func TestRestartOnlyWhatUsesTheBinding(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	other := newFixture(t)
	other.serviceAccount()
	web := f.deployment("web", f.sa, f.sa, "creds")
	victim := f.deployment("victim", "other", "other", "")
	var victimRS appsv1.ReplicaSet
	if err := f.get(&victimRS, "victim-5d8f7c"); err != nil {
		t.Fatal(err)
	}
	forged := envPod(f.ns, "forged", f.sa, "creds")
	forged.OwnerReferences = []metav1.OwnerReference{controllerRef(&victimRS, "ReplicaSet")}
	f.create(forged)
	stale := f.deployment("stale", f.sa, f.sa, "")
	wrongUID := envPod(f.ns, "wrong-uid", f.sa, "creds")
	wrongUID.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "stale-5d8f7c", UID: "00000000-0000-0000-0000-000000000000", Controller: ptr.To(true)}}
	f.create(wrongUID)
	byHand := f.deployment("by-hand", "other", "other", "creds")
	elsewhere := other.deployment("web", other.sa, other.sa, "creds")

	f.envBinding("creds", nil)
	f.waitReady("creds", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	f.waitRestartStatus("creds", nil)
	rotated := f.rotate("creds", "2h")
	f.waitRestartStatus("creds", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "web")
		return e != nil && e.Credentials == rotated, fmt.Sprintf("web: %+v", e)
	})
	if got := f.annotation(web, "creds"); got != rotated {
		t.Fatalf("the control was not restarted: %q", got)
	}
	ev := f.waitEvent("creds", corev1.EventTypeWarning, stsbindv1.ReasonRolloutRefused)
	if !strings.Contains(ev.Note, "forged") || !strings.Contains(ev.Note, "victim") {
		t.Errorf("RolloutRefused: %s", ev.Note)
	}
	for _, o := range []client.Object{victim, stale, byHand} {
		if got := f.annotation(o, "creds"); got != "" || workloadPatches.get(f.ns+"/"+o.GetName()) != 0 {
			t.Errorf("%s restarted (%q)", o.GetName(), got)
		}
	}
	if got := other.annotation(elsewhere, "creds"); got != "" || workloadPatches.get(other.ns+"/web") != 0 {
		t.Errorf("the Deployment of another namespace was restarted (%q)", got)
	}
}

// TestRestartNothingAfterOperatorRestart: a controller that starts over
// Secrets it did not change reads the record of the last round and writes
// nothing: no workload patch, for a binding that restarted a Deployment
// and for one that only recorded its first credentials.
func TestRestartNothingAfterOperatorRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"rollout"}))
	mine := map[string]string{labelRestart: "rollout"}

	ctx, stop := context.WithCancel(context.Background())
	stopped, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	rolled := f.deployment("rolled", f.sa, f.sa, "rolled")
	fresh := f.deployment("fresh", f.sa, f.sa, "fresh")
	f.envBinding("rolled", mine)
	f.envBinding("fresh", mine)
	for _, name := range []string{"rolled", "fresh"} {
		f.waitReady(name, metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
		f.waitRestartStatus(name, nil)
	}
	id := f.rotate("rolled", "2h")
	f.waitRestartStatus("rolled", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "rolled")
		return e != nil && e.Credentials == id, fmt.Sprintf("%+v", e)
	})
	stop()
	<-stopped
	versions := map[string]string{}
	for _, d := range []*appsv1.Deployment{rolled, fresh} {
		if err := f.get(d, d.Name); err != nil {
			t.Fatal(err)
		}
		versions[d.Name] = d.ResourceVersion
	}
	patches := workloadPatches.get(f.ns+"/rolled") + workloadPatches.get(f.ns+"/fresh")
	if patches != 1 {
		t.Fatalf("%d patches before the restart, want 1", patches)
	}

	restartLogs := &testenv.SyncBuffer{}
	logger := zap.New(zap.WriteTo(restartLogs), zap.Level(zapcore.Level(-2))).WithName("restarted")
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	if _, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true, logger: &logger}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		for _, name := range []string{"rolled", "fresh"} {
			if !checkedAfterRestart(restartLogs.String(), f.ns, name) {
				return false, name + " not checked yet"
			}
		}
		return true, ""
	})
	if got := workloadPatches.get(f.ns+"/rolled") + workloadPatches.get(f.ns+"/fresh"); got != patches {
		t.Errorf("the restarted controller patched workloads %d times", got-patches)
	}
	for _, d := range []*appsv1.Deployment{rolled, fresh} {
		if err := f.get(d, d.Name); err != nil {
			t.Fatal(err)
		}
		if d.ResourceVersion != versions[d.Name] {
			t.Errorf("%s changed after the restart", d.Name)
		}
	}
	_, _ = logs.Write([]byte(restartLogs.String()))
}

// TestRestartWithGeneratedRBAC runs the controllers as a user holding only
// the ClusterRole generated from the markers: the pod list, the ReplicaSet
// read and the Deployment patch are all allowed by it.
func TestRestartWithGeneratedRBAC(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	role.Name = "stsbind-restart-rbac-" + f.ns
	f.create(&role)
	user := role.Name
	f.create(&rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})
	restricted, err := env.ControlPlane.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"restart-rbac"}))
	if _, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true, config: restricted.Config()}); err != nil {
		t.Fatal(err)
	}
	f.serviceAccount()
	web := f.deployment("web", f.sa, f.sa, "rbac")
	f.envBinding("rbac", map[string]string{labelRestart: "restart-rbac"})
	f.waitReady("rbac", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	f.waitRestartStatus("rbac", nil)
	id := f.rotate("rbac", "2h")
	f.waitRestartStatus("rbac", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "web")
		return e != nil && e.Credentials == id && e.NextRestartTime == nil, fmt.Sprintf("%+v", e)
	})
	if got := f.annotation(web, "rbac"); got != id {
		t.Errorf("template annotation %q, want %q", got, id)
	}
	for _, e := range f.events("rbac") {
		if e.Type == corev1.EventTypeWarning {
			t.Errorf("Warning %s: %s", e.Reason, e.Note)
		}
	}
}

// TestRestartOnRotationDisabled: with --restart-on-rotation=false a binding
// that asks for restarts gets a Warning event and no status.restart.
func TestRestartOnRotationDisabled(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"restart-off"}))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{&stsbindv1.IAMRoleBinding{}: {Label: only}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := newRestartReconciler(mgr, true)
	r.Disabled = true
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()
	f.envBinding("off", map[string]string{labelRestart: "restart-off"})
	ev := f.waitEvent("off", corev1.EventTypeWarning, stsbindv1.ReasonRestartOnRotationDisabled)
	if !strings.Contains(ev.Note, "--restart-on-rotation=false") {
		t.Errorf("event: %s", ev.Note)
	}
	var b stsbindv1.IAMRoleBinding
	if err := f.get(&b, "off"); err != nil {
		t.Fatal(err)
	}
	if b.Status.Restart != nil {
		t.Errorf("status.restart %+v", b.Status.Restart)
	}
}

// TestRestartAfterOperatorStoppedMidRotation: a controller that stopped
// after writing new credentials but before restarting the workloads leaves
// status.restart naming the replaced credentials. The next controller finds
// the Secret's hash differs and restarts the Deployment: its pods do hold
// the replaced credentials.
func TestRestartAfterOperatorStoppedMidRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"midway"}))
	ctx, stop := context.WithCancel(context.Background())
	stopped, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	web := f.deployment("web", f.sa, f.sa, "midway")
	f.envBinding("midway", map[string]string{labelRestart: "midway"})
	f.waitReady("midway", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	f.waitRestartStatus("midway", nil)
	stop()
	<-stopped

	// What the stop left: the status of a round for other credentials.
	var b stsbindv1.IAMRoleBinding
	if err := f.get(&b, "midway"); err != nil {
		t.Fatal(err)
	}
	orig := b.DeepCopy()
	b.Status.Restart.Credentials = "0000000000000000"
	if err := k8s.Status().Patch(context.Background(), &b, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	if _, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true}); err != nil {
		t.Fatal(err)
	}
	want := f.credentialsID("midway")
	f.waitRestartStatus("midway", func(st *stsbindv1.RestartStatus) (bool, string) {
		e := entry(st, "Deployment", "web")
		return e != nil && e.Credentials == want && e.LastRestartTime != nil, fmt.Sprintf("web: %+v", e)
	})
	if got := f.annotation(web, "midway"); got != want {
		t.Errorf("template annotation %q, want %q", got, want)
	}
}
