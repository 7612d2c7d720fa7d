package chart

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

func operatorLogs() string {
	out, _ := suite.Node.RunKubectl("-n", namespace, "logs", "-l", "app.kubernetes.io/name=stsbind", "--tail=30", "--prefix")
	return "operator pods' logs:\n" + out
}

// TestChartLifecycle installs, uses and upgrades the chart, in that order;
// the tests that need the release follow, TestChartUninstall (in the file
// that sorts last) removes it.
func TestChartLifecycle(t *testing.T) {
	ctx := context.Background()
	t.Run("install", func(t *testing.T) {
		start := time.Now()
		if _, err := runHelm(append([]string{"install", release, "charts/stsbind", "--namespace", namespace, "--create-namespace",
			"--wait", "--timeout", "5m"}, values()...)...); err != nil {
			t.Fatalf("%v\n%s", err, operatorLogs())
		}
		t.Logf("helm install --wait returned after %s", time.Since(start).Round(time.Millisecond))
		checkInstalled(t, ctx)
		// helm returns when the pods are Ready; kube-proxy routes to them a
		// little later, and until then pods are admitted uninjected.
		webhookSteady(t)
		t.Logf("webhook injecting %s after helm install began", time.Since(start).Round(time.Millisecond))
	})
	t.Run("pods", func(t *testing.T) { podsInEveryMode(t) })
	t.Run("upgrade", func(t *testing.T) {
		var before appsv1.Deployment
		if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, &before); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// A changed value rolls the Deployment: new pods, new leader.
		if _, err := runHelm(append([]string{"upgrade", release, "charts/stsbind", "--namespace", namespace,
			"--wait", "--timeout", "5m", "--set", "logLevel=debug"}, values()...)...); err != nil {
			t.Fatalf("%v\n%s", err, operatorLogs())
		}
		t.Logf("helm upgrade --wait returned after %s", time.Since(start).Round(time.Millisecond))
		var after appsv1.Deployment
		if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, &after); err != nil {
			t.Fatal(err)
		}
		if after.Generation == before.Generation {
			t.Errorf("the upgrade did not change the Deployment (generation %d)", after.Generation)
		}
		checkInstalled(t, ctx)
		webhookSteady(t)
		ns := suite.Namespace(t, "chart-upgraded", nil)
		suite.CreateBinding(t, ns, "files", stsbindv1.InjectionFiles)
		_, log, _, _ := suite.RunApp(t, ns, stsbindv1.InjectionFiles)
		t.Logf("after the upgrade, a Files-mode pod's log:\n%s", log)
	})
}

// checkInstalled: both replicas ready, one of them holds the leader lease,
// the PodDisruptionBudget allows one disruption, the webhook configuration
// calls a Service and has a caBundle.
func checkInstalled(t *testing.T, ctx context.Context) {
	t.Helper()
	var d appsv1.Deployment
	if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 || d.Status.UpdatedReplicas != 2 {
		t.Errorf("deployment: %d ready, %d updated; want 2", d.Status.ReadyReplicas, d.Status.UpdatedReplicas)
	}
	var lease coordinationv1.Lease
	err := poll(60*time.Second, func() error {
		if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "stsbind.stsbind.dev"}, &lease); err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || !strings.HasPrefix(*lease.Spec.HolderIdentity, release+"-") {
			return fmt.Errorf("holder %v", lease.Spec.HolderIdentity)
		}
		return nil
	})
	if err != nil {
		t.Errorf("leader lease: %v", err)
	} else {
		t.Logf("leader: %s", *lease.Spec.HolderIdentity)
	}
	var pdb policyv1.PodDisruptionBudget
	if err := poll(30*time.Second, func() error {
		if err := suite.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, &pdb); err != nil {
			return err
		}
		if pdb.Status.DisruptionsAllowed != 1 {
			return fmt.Errorf("disruptions allowed %d, want 1", pdb.Status.DisruptionsAllowed)
		}
		return nil
	}); err != nil {
		t.Errorf("pod disruption budget: %v", err)
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	if err := suite.Client.Get(ctx, client.ObjectKey{Name: release}, &hook); err != nil {
		t.Fatal(err)
	}
	for _, w := range hook.Webhooks {
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != namespace || len(w.ClientConfig.CABundle) == 0 {
			t.Errorf("webhook %s: client config %+v", w.Name, w.ClientConfig)
		}
	}
}

// podsInEveryMode: the binding and the pod are created back to back, as a
// deployment pipeline does; kubelet waits for the Secret the operator
// writes, then the pod's own process lists the bucket.
func podsInEveryMode(t *testing.T) {
	for _, mode := range []stsbindv1.InjectionMode{stsbindv1.InjectionFiles, stsbindv1.InjectionEnv, stsbindv1.InjectionEndpoint} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			ns := suite.Namespace(t, "chart", nil)
			b := suite.CreateBinding(t, ns, strings.ToLower(string(mode)), mode)
			_, log, started, done := suite.RunApp(t, ns, mode)
			suite.WaitReady(t, b, operatorLogs)
			t.Logf("%s mode, pod created with its binding: app seen started after %s, pod Succeeded after %s; its log:\n%s",
				mode, started.Round(time.Millisecond), done.Round(time.Millisecond), log)
		})
	}
}

func poll(timeout time.Duration, check func() error) error {
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err = check(); err == nil {
			return nil
		}
	}
	return err
}
