package chart

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// keptMessage is the controller's debug line for a binding whose
// credentials it keeps (controllers/iamrolebinding_controller.go).
const keptMessage = "Kept IAMRoleBinding credentials"

// TestOperatorRestartWithValidSecrets: both operator pods are deleted while
// every binding's Secret is good. The new leader reconciles every binding
// (its log says it kept each) without one STS call and without writing a
// Secret, and all stay Ready.
func TestOperatorRestartWithValidSecrets(t *testing.T) {
	requireChart(t)
	ctx := context.Background()
	sts := newTestSTS(t)
	ns := suite.Namespace(t, "restart", nil)
	const n = 8
	bs := sts.bindings(t, ns, n)
	calls := len(sts.Calls(""))
	versions := map[string]string{}
	for _, b := range bs {
		versions[b.Name] = secretOf(t, b).ResourceVersion
	}

	start := time.Now()
	gone := map[string]bool{}
	for _, p := range operatorPods(t) {
		gone[p.Name] = true
		if err := suite.Client.Delete(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitOperator(t, gone)
	t.Logf("both operator pods replaced, %s leads, %s after the deletion", leader, time.Since(start).Round(time.Millisecond))
	webhookSteady(t)
	t.Logf("FIGURE webhook outage: pods are injected again (steadily) %s after both operator pods were deleted", time.Since(start).Round(time.Millisecond))

	// The new leader has reconciled every binding once its log says so;
	// only then does "no STS call" mean anything.
	var missing []string
	if err := poll(time.Minute, func() error {
		kept := keptBindings(podLog(namespace, leader, "manager"), ns)
		missing = missing[:0]
		for _, b := range bs {
			if !kept[b.Name] {
				missing = append(missing, b.Name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no %q line for %v", keptMessage, missing)
		}
		return nil
	}); err != nil {
		t.Fatalf("the new leader %s: %v\n%s", leader, err, operatorLogs())
	}
	t.Logf("the new leader kept all %d bindings' credentials %s after the deletion", n, time.Since(start).Round(time.Millisecond))

	if after := sts.Calls(""); len(after) != calls {
		for _, c := range after[calls:] {
			t.Errorf("STS call after the restart: %s %s (%s)", c.Operation, c.RoleARN, c.Time.Format("15:04:05.000"))
		}
	}
	t.Logf("FIGURE STS calls after the restart: %d", len(sts.Calls(""))-calls)
	for _, b := range bs {
		if rv := secretOf(t, b).ResourceVersion; rv != versions[b.Name] {
			t.Errorf("binding %s: Secret written after the restart (resourceVersion %s, was %s)", b.Name, rv, versions[b.Name])
		}
		if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || b.Status.ObservedGeneration != b.Generation {
			t.Errorf("binding %s after the restart: %+v, observed generation %d of %d", b.Name, c, b.Status.ObservedGeneration, b.Generation)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// keptBindings are the names of the namespace's bindings that the log
// (controller-runtime's JSON lines) says were kept.
func keptBindings(log, ns string) map[string]bool {
	kept := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == keptMessage && line.Namespace == ns {
			kept[line.Name] = true
		}
	}
	return kept
}
