package clients

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/stsfront"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// declaredLifetime is the first credentials' declared lifetime: the
// controller refreshes them after two thirds of it, so the clients must be
// writing with them before then. MinIO stops accepting them 3 s after it.
const declaredLifetime = 36 * time.Second

// result is one measured cell.
type result struct {
	verdict verdict
	// toNewKey is from the rotation to the first request signed with the
	// new key (long-running SDKs that refresh).
	toNewKey time.Duration
}

// TestClientMatrix measures every client in every mode (see the package
// doc), compares each cell with what README claims, and README's table with
// the cells. The modes run in parallel, each with its own binding, pod and
// rotation; within a mode the long-running writers run side by side.
func TestClientMatrix(t *testing.T) {
	programs := resolveClients(t)
	var mu sync.Mutex
	results := map[string]map[string]result{}
	t.Run("mode", func(t *testing.T) {
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				t.Parallel()
				r := runMode(t, m, programs)
				mu.Lock()
				results[m.name] = r
				mu.Unlock()
			})
		}
	})
	var figures []string
	for _, m := range modes {
		for _, c := range matrixClients {
			if r := results[m.name][c.name]; r.toNewKey > 0 {
				figures = append(figures, fmt.Sprintf("%s, %s: %.1f s", m.name, c.name, r.toNewKey.Seconds()))
			}
		}
	}
	t.Logf("FIGURE rotation to the first request signed with the new key (the old credentials declared to expire about %.0f s after the rotation):\n  %s",
		declaredLifetime.Seconds()/3, strings.Join(figures, "\n  "))
	if t.Failed() {
		return
	}
	checkREADME(t, results)
}

// matrixPod is one mode's binding, its pod as the webhook stored it, and
// what the pod's containers see.
type matrixPod struct {
	ns, binding string
	pod         *corev1.Pod
	secret      *corev1.Secret
	app         *podview.View
}

// runMode measures one column. Only the long-running writers start before
// the rotation (the controller's, on its own schedule); the one-shots run
// after it, so that on a loaded machine nothing holds the writers back.
func runMode(t *testing.T, m mode, programs map[*awsClient]string) map[string]result {
	start := time.Now()
	expires := start.Add(declaredLifetime).Truncate(time.Second)
	cutoff := expires.Add(3 * time.Second)
	p := newMatrixPod(t, m, stsfront.Plan{Cutoff: cutoff, Expiration: expires})
	rot := rotation{oldKey: string(p.secret.Data[credentials.KeyAccessKeyID]), cutoff: cutoff}
	if issued := front.Issued(p.ns); issued != rot.oldKey {
		t.Fatalf("the Secret holds %q, the planned first credentials were %q: the rotation would prove nothing", rot.oldKey, issued)
	}
	rotatedCh := p.kubeletSync(rot.oldKey, cutoff)
	bucket := strings.ToLower(m.name) + "-" + strings.ToLower(rand.String(6))
	rootPut(t, bucket)

	// The long-running writers, one per SDK, until a few writes past the cutoff.
	end := cutoff.Add(cutoffSlack + (minAfterCutoff+3)*time.Second)
	writers := map[*awsClient]*process{}
	for _, c := range matrixClients {
		if c.sdk {
			writers[c] = startProcess(t, p.app, c.argv(programs[c], bucket, "long-"+shortName(c), end))
		}
	}
	t.Logf("binding Ready, pod viewed and writers started %s after the start; first credentials declared to expire at %s, cut off at %s",
		time.Since(start).Round(time.Millisecond), expires.Format("15:04:05"), cutoff.Format("15:04:05"))

	fresh := <-rotatedCh
	switch {
	case fresh.err != nil:
		t.Fatalf("writing the rotated Secret to the mounts: %v", fresh.err)
	case fresh.rotated == nil:
		t.Fatalf("the controller had not refreshed the credentials by the cutoff %s", cutoff.Format("15:04:05"))
	}
	rot.newKey, rot.rotated = string(fresh.secret.Data[credentials.KeyAccessKeyID]), fresh.rotated.rotated
	t.Logf("rotated at %s (%s after the start), %s before the declared expiry", rot.rotated.Format("15:04:05.000"),
		rot.rotated.Sub(start).Round(time.Millisecond), expires.Sub(rot.rotated).Round(time.Millisecond))

	// Each CLI in the container from before the rotation, still before the
	// cutoff; then every client once in a new container: a pod started now,
	// or restarted, sees the current Secret.
	obs := map[*awsClient]*observed{}
	for _, c := range matrixClients {
		obs[c] = &observed{}
		if !c.sdk {
			out, err := runOnce(t, p.app, c.argv(programs[c], bucket, "before-"+shortName(c), time.Time{}))
			obs[c].before, obs[c].beforeErr = out, judgeCommand(c, out, err)
		}
	}
	t0 := time.Now()
	for _, c := range matrixClients {
		o := obs[c]
		out, err := runOnce(t, fresh.app, c.argv(programs[c], bucket, "once-"+shortName(c), time.Time{}))
		o.oneShot, o.oneShotErr = out, judgeCommand(c, out, err)
		if ws := parseWrites(out); len(ws) == 1 {
			o.oneShotKey = ws[0].AccessKeyID
		}
	}
	t.Logf("the one-shots took %s", time.Since(t0).Round(time.Millisecond))

	// After the cutoff: each CLI again in the container it ran in before.
	time.Sleep(time.Until(cutoff.Add(cutoffSlack)))
	staticOldKeyFails(t, p.secret, bucket)
	for _, c := range matrixClients {
		if !c.sdk {
			out, err := runOnce(t, p.app, c.argv(programs[c], bucket, "after-"+shortName(c), time.Time{}))
			obs[c].after, obs[c].afterErr = out, judgeCommand(c, out, err)
		}
	}

	results := map[string]result{}
	for _, c := range matrixClients {
		claim := m.cells[c.name]
		o := obs[c]
		if c.sdk {
			writers[c].wait(t, end.Add(30*time.Second))
			o.long = judgeLongRunning(parseWrites(writers[c].out.String()), rot, claim.fails)
		}
		t.Run(c.name, func(t *testing.T) {
			if c.sdk {
				t.Logf("long-running: %d writes with the old key, %d with the new one, %d failed", o.long.oldOK, o.long.newOK, o.long.failed)
			}
			r, problems := judgeCell(c, claim, rot, *o)
			for _, p := range problems {
				t.Error(p)
			}
			if r.toNewKey > 0 {
				t.Logf("FIGURE first request signed with the new key %.1f s after the rotation", r.toNewKey.Seconds())
			}
			if r.verdict != claim.verdict {
				t.Errorf("measured %q, README says %q (%s)", r.verdict, claim.verdict, claim.why)
			}
			if t.Failed() && c.sdk {
				t.Logf("writer output:\n%s", writers[c].out.String())
			}
			results[c.name] = r
		})
	}
	return results
}

// observed is what one client did in one mode.
type observed struct {
	// oneShot is a single call in a new container after the rotation,
	// signed by oneShotKey (SDKs).
	oneShot    string
	oneShotErr error
	oneShotKey string
	// long is the long-running writer's judgement (SDKs).
	long longRun
	// before and after are a CLI's calls in the container of before the
	// rotation, before and after the cutoff.
	before, after       string
	beforeErr, afterErr error
}

// judgeCell decides a cell's verdict from what the client did:
//   - does not work: the one-shot failed as the claim says (and so did
//     every long-running write);
//   - refreshes: the one-shot worked and the long-running writer refreshed,
//     or the CLI still works after the cutoff in the same container;
//   - works until restart: the one-shot (a restarted container) worked with
//     the new key, the long-running writer or the CLI in the same container
//     failed as the claim says after the cutoff.
func judgeCell(c *awsClient, claim cell, rot rotation, o observed) (result, []string) {
	var r result
	var problems []string
	if o.oneShotErr != nil {
		if claim.verdict != doesNotWork {
			return r, []string{fmt.Sprintf("one-shot: %v\n%s", o.oneShotErr, o.oneShot)}
		}
		var err error
		if c.sdk {
			err = judgeOneShot(parseWrites(o.oneShot), claim.fails, true)
		} else if !strings.Contains(o.oneShot, claim.fails.says) {
			err = fmt.Errorf("failed otherwise than %q: %s", claim.fails.says, o.oneShot)
		}
		if err != nil {
			return r, []string{"one-shot: " + err.Error()}
		}
		r.verdict = doesNotWork
	}
	switch {
	case c.sdk:
		problems = append(problems, o.long.problems...)
		if r.verdict == doesNotWork && o.long.verdict != doesNotWork {
			problems = append(problems, fmt.Sprintf("the one-shot failed, the long-running writer says %q", o.long.verdict))
		}
		r.verdict = o.long.verdict
		if r.verdict == refreshes {
			r.toNewKey = o.long.firstNew.Sub(rot.rotated)
		}
	case r.verdict == doesNotWork:
	case o.beforeErr != nil:
		problems = append(problems, fmt.Sprintf("before the cutoff, in the container of before the rotation: %v", o.beforeErr))
	case o.afterErr == nil:
		r.verdict = refreshes
	case strings.Contains(o.after, claim.fails.says):
		r.verdict = untilRestart
	default:
		problems = append(problems, fmt.Sprintf("after the cutoff, in the same container: %v, not %q", o.afterErr, claim.fails.says))
	}
	if r.verdict != doesNotWork && c.sdk && o.oneShotErr == nil && o.oneShotKey != rot.newKey {
		problems = append(problems, fmt.Sprintf("the one-shot in a new container signed with %q, not the new key", o.oneShotKey))
	}
	if len(problems) > 0 {
		r.verdict = ""
	}
	return r, problems
}

func shortName(c *awsClient) string {
	return strings.ToLower(strings.NewReplacer(" ", "", ",", "", "(", "", ")", "", ".", "").Replace(c.name))
}

// judgeCommand: nil when a one-shot worked (a CLI exited 0, an SDK's
// single write succeeded).
func judgeCommand(c *awsClient, out string, err error) error {
	if !c.sdk {
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		return nil
	}
	return judgeOneShot(parseWrites(out), failure{}, false)
}

// newMatrixPod creates a namespace, a binding in mode m through the STS
// front with plan, and right after it a pod; once the binding is Ready it
// writes the pod's mounts and starts its sidecar, if it has one.
func newMatrixPod(t *testing.T, m mode, plan stsfront.Plan) *matrixPod {
	ctx := context.Background()
	p := &matrixPod{ns: "clients-" + strings.ToLower(m.name) + "-" + rand.String(5), binding: "creds-" + rand.String(6)}
	front.SetPlan(p.ns, plan)
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.ns}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: "app"}},
		&stsbindv1.IAMRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.binding},
			Spec: stsbindv1.IAMRoleBindingSpec{
				ServiceAccountName: "app", RoleARN: minio.RoleARN, Region: region,
				SessionName: p.ns, Injection: stsbindv1.Injection{Mode: m.injection},
			},
		},
		// envtest runs no ServiceAccount admission: the name is written out.
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: "app"},
			Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
	p.pod = &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: "app"}, p.pod); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var b stsbindv1.IAMRoleBinding
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: p.ns, Name: p.binding}, &b); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == b.Generation {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding %s not Ready after 60s: %+v", p.binding, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.secret = p.getSecret(t)
	app, err := p.materialize(p.secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Cleanup)
	p.app = app
	if len(p.pod.Spec.InitContainers) > 0 {
		startSidecar(t, p.pod, p.secret)
	}
	return p
}

func (p *matrixPod) getSecret(t *testing.T) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: p.binding}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// materialize writes s to every Secret mount of the pod's containers, as
// kubelet does when the Secret changes, and returns what the app container
// sees. The mounts are removed when the app view is cleaned up.
func (p *matrixPod) materialize(s *corev1.Secret) (*podview.View, error) {
	secrets := map[string]*corev1.Secret{s.Name: s}
	for _, c := range p.pod.Spec.InitContainers {
		if _, err := podview.Materialize(p.pod, c.Name, secrets); err != nil {
			return nil, err
		}
	}
	return podview.Materialize(p.pod, "app", secrets)
}

// rotated is the pod after the rotation: the new Secret, in its mounts
// since rotated.
type rotated struct {
	secret  *corev1.Secret
	app     *podview.View
	rotated time.Time
}

// kubeletSync does kubelet's part: once the controller has written new
// credentials into the Secret, it writes them to the pod's mounts at once
// and sends the new state, or the error; nil, nil if none came by the
// cutoff.
func (p *matrixPod) kubeletSync(oldKey string, cutoff time.Time) <-chan rotatedOrErr {
	ch := make(chan rotatedOrErr, 1)
	go func() {
		for time.Now().Before(cutoff) {
			var s corev1.Secret
			err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: p.binding}, &s)
			if key := string(s.Data[credentials.KeyAccessKeyID]); err == nil && key != "" && key != oldKey {
				app, err := p.materialize(&s)
				ch <- rotatedOrErr{&rotated{secret: &s, app: app, rotated: time.Now()}, err}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		ch <- rotatedOrErr{}
	}()
	return ch
}

type rotatedOrErr struct {
	*rotated
	err error
}

// rootPut creates the bucket with MinIO's root user.
func rootPut(t *testing.T, bucket string) {
	t.Helper()
	root := &podview.View{Env: []string{"AWS_ACCESS_KEY_ID=" + minio.RootUser, "AWS_SECRET_ACCESS_KEY=" + minio.RootPassword, "AWS_REGION=" + region}}
	if out, err := runOnce(t, root, []string{bin + "/s3client", "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "root"}); err != nil {
		t.Fatalf("creating bucket %s as root: %v\n%s", bucket, err, out)
	}
}

// staticOldKeyFails is the control: the first credentials, held as static
// variables, no longer work, so a client that succeeds now has refreshed.
func staticOldKeyFails(t *testing.T, first *corev1.Secret, bucket string) {
	t.Helper()
	v := &podview.View{Env: []string{"AWS_REGION=" + region}}
	for _, k := range []string{credentials.KeyAccessKeyID, credentials.KeySecretAccessKey, credentials.KeySessionToken} {
		v.Env = append(v.Env, k+"="+string(first.Data[k]))
	}
	out, err := runOnce(t, v, []string{bin + "/s3client", "-endpoint", minio.Endpoint, "-bucket", bucket, "-key", "static", "-loop", "-rounds", "1"})
	if ws := parseWrites(out); err != nil || len(ws) != 1 || !cutOff.matches(ws[0]) {
		t.Fatalf("the first credentials, held statically, did not fail with %s after the cutoff: the test cannot tell refresh from no refresh\n%s", cutOff.says, out)
	}
}

// process is a running client.
type process struct {
	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan error
}

func startProcess(t *testing.T, v *podview.View, argv []string) *process {
	t.Helper()
	p := &process{out: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = v.Environ(t.TempDir())
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", argv[0], err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit by deadline, killing it then.
func (p *process) wait(t *testing.T, deadline time.Time) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("%s exited: %v\n%s", p.cmd.Path, err, p.out.String())
		}
	case <-time.After(time.Until(deadline)):
		_ = p.cmd.Process.Kill()
		t.Errorf("%s still running at %s: killed\n%s", p.cmd.Path, deadline.Format("15:04:05"), p.out.String())
	}
}

// runOnce runs a client with exactly the container's environment.
func runOnce(t *testing.T, v *podview.View, argv []string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = v.Environ(t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}
