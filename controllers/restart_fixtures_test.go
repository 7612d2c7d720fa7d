package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/controllers"
)

// testRestartMinInterval is the managers' --restart-min-interval: longer
// than any test, so a second restart within a test waits, and only the
// held credentials' expiry can end the wait.
const testRestartMinInterval = time.Hour

// newRestartReconciler is the restart-on-rotation controller as main.go
// builds it, its workload patches counted.
func newRestartReconciler(mgr ctrl.Manager, skipNameCheck bool) *controllers.RestartReconciler {
	return &controllers.RestartReconciler{
		Client:             patchCounting{mgr.GetClient()},
		APIReader:          mgr.GetAPIReader(),
		Recorder:           mgr.GetEventRecorder("stsbind"),
		MinInterval:        testRestartMinInterval,
		SkipNameValidation: skipNameCheck,
	}
}

// workloadPatches counts the patches of Deployments, StatefulSets and
// DaemonSets by "namespace/name", whether or not they changed anything:
// "writes nothing" means no request at all.
var workloadPatches = &counter{n: map[string]int{}}

type patchCounting struct{ client.Client }

func (c patchCounting) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	switch obj.(type) {
	case *appsv1.Deployment, *appsv1.StatefulSet, *appsv1.DaemonSet:
		workloadPatches.add(obj.GetNamespace() + "/" + obj.GetName())
	}
	return c.Client.Patch(ctx, obj, patch, opts...)
}

// envBinding is a binding in Env mode that restarts on rotation.
func (f *fixture) envBinding(name string, labels map[string]string) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	return f.binding(name, func(b *stsbindv1.IAMRoleBinding) {
		b.Labels = labels
		b.Spec.Injection = stsbindv1.Injection{Mode: stsbindv1.InjectionEnv, RestartOnRotation: stsbindv1.RestartRollout}
	})
}

// envPod is a pod as the webhook leaves it in Env mode: variables from the
// Secret (none when secret is empty).
func envPod(ns, name, sa, secret string) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: "app"}
	if secret != "" {
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
			c.Env = append(c.Env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: k}}})
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{c}},
	}
}

func template(name, sa string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
}

func controllerRef(o client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: o.GetName(), UID: o.GetUID(), Controller: ptr.To(true)}
}

// deployment creates what kube-controller-manager would (envtest runs
// none): a Deployment whose template runs as templateSA, its ReplicaSet,
// and one pod of podSA reading secret ("" for none).
func (f *fixture) deployment(name, templateSA, podSA, secret string) *appsv1.Deployment {
	f.t.Helper()
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: appsv1.DeploymentSpec{Selector: sel, Template: template(name, templateSA)}}
	f.create(d)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name + "-5d8f7c", OwnerReferences: []metav1.OwnerReference{controllerRef(d, "Deployment")}},
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: template(name, templateSA)}}
	f.create(rs)
	pod := envPod(f.ns, name+"-5d8f7c-x1", podSA, secret)
	pod.OwnerReferences = []metav1.OwnerReference{controllerRef(rs, "ReplicaSet")}
	f.create(pod)
	return d
}

func (f *fixture) statefulSet(name, sa, secret string) *appsv1.StatefulSet {
	f.t.Helper()
	s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: template(name, sa)}}
	f.create(s)
	pod := envPod(f.ns, name+"-0", sa, secret)
	pod.OwnerReferences = []metav1.OwnerReference{controllerRef(s, "StatefulSet")}
	f.create(pod)
	return s
}

// annotation is the workload's restart annotation for the binding.
func (f *fixture) annotation(obj client.Object, binding string) string {
	f.t.Helper()
	if err := f.get(obj, obj.GetName()); err != nil {
		f.t.Fatal(err)
	}
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return w.Spec.Template.Annotations[stsbindv1.AnnotationRestartPrefix+binding]
	case *appsv1.StatefulSet:
		return w.Spec.Template.Annotations[stsbindv1.AnnotationRestartPrefix+binding]
	}
	f.t.Fatalf("%T", obj)
	return ""
}

// credentialsID is the identity the controller writes: the head of the
// Secret's data hash.
func (f *fixture) credentialsID(secret string) string {
	f.t.Helper()
	return f.secret(secret).Annotations[stsbindv1.AnnotationDataHash][:16]
}

// waitRestartStatus waits until status.restart names the Secret's current
// credentials and cond holds for it.
func (f *fixture) waitRestartStatus(name string, cond func(*stsbindv1.RestartStatus) (bool, string)) *stsbindv1.IAMRoleBinding {
	f.t.Helper()
	var b stsbindv1.IAMRoleBinding
	eventually(f.t, 30*time.Second, func() (bool, string) {
		if err := f.get(&b, name); err != nil {
			return false, err.Error()
		}
		want := f.credentialsID(name)
		if b.Status.Restart == nil || b.Status.Restart.Credentials != want {
			return false, fmt.Sprintf("status.restart %+v, want credentials %s", b.Status.Restart, want)
		}
		if cond == nil {
			return true, ""
		}
		return cond(b.Status.Restart)
	})
	return &b
}

// rotate changes the session duration, which re-issues the credentials at
// once, and returns the new credentials' identity.
func (f *fixture) rotate(name string, d string) string {
	f.t.Helper()
	before := f.credentialsID(name)
	var b stsbindv1.IAMRoleBinding
	if err := f.get(&b, name); err != nil {
		f.t.Fatal(err)
	}
	f.update(&b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionDuration = d })
	var after string
	eventually(f.t, 30*time.Second, func() (bool, string) {
		after = f.credentialsID(name)
		return after != before, "the Secret still holds the credentials " + before
	})
	return after
}

func entry(st *stsbindv1.RestartStatus, kind, name string) *stsbindv1.WorkloadRestart {
	for i := range st.Workloads {
		if st.Workloads[i].Kind == kind && st.Workloads[i].Name == name {
			return &st.Workloads[i]
		}
	}
	return nil
}

// checkedAfterRestart finds the restart controller's "nothing rotated" line
// for the binding in a manager's log.
func checkedAfterRestart(log, ns, name string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Checked IAMRoleBinding restarts: nothing rotated") &&
			strings.Contains(line, `"name":"`+name+`"`) && strings.Contains(line, `"namespace":"`+ns+`"`) {
			return true
		}
	}
	return false
}
