package charts

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/stsbind/stsbind/controllers"
)

// TestPrometheusRuleOffByDefault: no PrometheusRule unless asked for, and
// none without metrics.
func TestPrometheusRuleOffByDefault(t *testing.T) {
	for name, values := range map[string][]string{
		"default":    nil,
		"no metrics": {"--set", "metrics.enabled=false", "--set", "metrics.prometheusRule.enabled=true"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, o := range renderObjects(t, values...) {
				if o.GetKind() == "PrometheusRule" {
					t.Errorf("rendered PrometheusRule %s", o.GetName())
				}
			}
		})
	}
}

var metricName = regexp.MustCompile(`\bstsbind_[a-z_]+`)

// TestPrometheusRule checks the rendered alerts against the controller: every
// metric an expression names is one the controller exports, each alert
// aggregates by the binding labels those metrics carry (every replica
// exports every binding), the values arrive, and Prometheus's own
// templating survives Helm's. promtool, when on PATH, checks the rules too.
func TestPrometheusRule(t *testing.T) {
	objs := renderObjects(t, cases["options"]...)
	rule := findKind(objs, "PrometheusRule")
	if rule == nil {
		t.Fatal("no PrometheusRule rendered with metrics.prometheusRule.enabled")
	}
	if rule.GetLabels()["release"] != "prometheus" || rule.GetNamespace() != namespace {
		t.Errorf("labels %v, namespace %q", rule.GetLabels(), rule.GetNamespace())
	}
	exported := []string{controllers.MetricExpiration, controllers.MetricRenewal, controllers.MetricReady, controllers.MetricPodsWithoutCredentials}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if len(groups) != 1 {
		t.Fatalf("groups: %v", groups)
	}
	rules, _, _ := unstructured.NestedSlice(groups[0].(map[string]any), "rules")
	alerts := map[string]map[string]any{}
	used := map[string]bool{}
	for _, r := range rules {
		r := r.(map[string]any)
		name, _ := r["alert"].(string)
		alerts[name] = r
		expr, _ := r["expr"].(string)
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: expression names no stsbind metric: %s", name, expr)
		}
		for _, m := range names {
			if !slices.Contains(exported, m) {
				t.Errorf("%s: expression names %s, which the controller does not export (%v)", name, m, exported)
			}
			used[m] = true
		}
		if strings.Count(expr, "by (namespace, name)") != len(names) {
			t.Errorf("%s: not every metric is aggregated by (namespace, name): %s", name, expr)
		}
		summary, _, _ := unstructured.NestedString(r, "annotations", "summary")
		if !strings.Contains(summary, "{{ $labels.namespace }}/{{ $labels.name }}") {
			t.Errorf("%s: summary lost Prometheus's templating: %q", name, summary)
		}
	}
	for _, m := range exported {
		if !used[m] {
			t.Errorf("no alert uses %s", m)
		}
	}
	want := map[string]struct{ exprPart, forValue, severity string }{
		"StsbindCredentialsExpiring":    {"< 900", "1m", "critical"},
		"StsbindBindingNotReady":        {`{condition="False"}`, "30m", "critical"},
		"StsbindPodsWithoutCredentials": {"> 0", "10m", "critical"},
	}
	for name, w := range want {
		r := alerts[name]
		if r == nil {
			t.Errorf("no alert %s; have %v", name, alerts)
			continue
		}
		sev, _, _ := unstructured.NestedString(r, "labels", "severity")
		if !strings.Contains(r["expr"].(string), w.exprPart) || r["for"] != w.forValue || sev != w.severity {
			t.Errorf("%s: expr %q for %v severity %q; want %q in it, for %s, severity %s", name, r["expr"], r["for"], sev, w.exprPart, w.forValue, w.severity)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not on PATH: the rules' PromQL is checked only by the assertions above")
		return
	}
	spec, _, _ := unstructured.NestedMap(rule.Object, "spec")
	raw, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

func findKind(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}
