package clients

import (
	"context"
	"strings"
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
)

// matrixPod is one mode's binding, its pod as the webhook stored it, and
// what the pod's containers see.
type matrixPod struct {
	ns, binding string
	pod         *corev1.Pod
	secret      *corev1.Secret
	app         *podview.View
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
	if m.injection == stsbindv1.InjectionWebIdentity {
		// No Secret: the projected token is written by kubeletTokens.
		app, err := podview.Materialize(p.pod, "app", nil)
		if err != nil {
			t.Fatal(err)
		}
		p.app = app
		return p
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

// rotated is the pod after the rotation: the new Secret, written to its
// mounts from rotated on.
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
				// The new files appear from now on.
				at := time.Now()
				app, err := p.materialize(&s)
				ch <- rotatedOrErr{&rotated{secret: &s, app: app, rotated: at}, err}
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
