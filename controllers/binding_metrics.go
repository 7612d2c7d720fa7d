package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// Per-binding metric names; the chart's PrometheusRule uses them.
const (
	MetricExpiration             = "stsbind_binding_expiration_timestamp_seconds"
	MetricRenewal                = "stsbind_binding_renewal_timestamp_seconds"
	MetricReady                  = "stsbind_binding_ready_status"
	MetricPodsWithoutCredentials = "stsbind_binding_pods_without_credentials"
)

var (
	bindingLabels = []string{"namespace", "name"}

	expirationDesc = prometheus.NewDesc(MetricExpiration,
		"When the credentials in the IAMRoleBinding's Secret expire (Unix seconds, status.expiration); absent before the first issue.",
		bindingLabels, nil)
	renewalDesc = prometheus.NewDesc(MetricRenewal,
		"When the controller will next obtain credentials for the IAMRoleBinding (Unix seconds, status.nextRefreshTime); absent while no refresh is scheduled (Ready=False).",
		bindingLabels, nil)
	readyDesc = prometheus.NewDesc(MetricReady,
		"The IAMRoleBinding's Ready condition: 1 for its status (True, False or Unknown), 0 for the other two.",
		append(bindingLabels, "condition"), nil)
	podsDesc = prometheus.NewDesc(MetricPodsWithoutCredentials,
		"Running pods of the IAMRoleBinding's ServiceAccount without its credentials (status.podsWithoutCredentials); absent for mode None.",
		bindingLabels, nil)
)

// BindingMetrics exports each IAMRoleBinding's status as metrics, read from
// the cache at scrape time: one series set per binding, whatever the number
// of pods, and none left behind by a deleted binding. Names, times, a
// condition status and a count: no credential material.
type BindingMetrics struct {
	// Reader lists IAMRoleBindings; the manager's cache.
	Reader client.Reader
}

// Describe sends the four descriptors.
func (m BindingMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expirationDesc, renewalDesc, readyDesc, podsDesc} {
		ch <- d
	}
}

// Collect sends the series of every binding the cache holds; none while it
// cannot list them (before the cache started).
func (m BindingMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var list stsbindv1.IAMRoleBindingList
	if err := m.Reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	for i := range list.Items {
		for _, s := range bindingSeries(&list.Items[i]) {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, s.value, s.labels...)
		}
	}
}

type series struct {
	desc   *prometheus.Desc
	value  float64
	labels []string
}

// bindingSeries is what one binding exports.
func bindingSeries(b *stsbindv1.IAMRoleBinding) []series {
	ns, name := b.Namespace, b.Name
	out := make([]series, 0, 6)
	if b.Status.Expiration != nil {
		out = append(out, series{expirationDesc, unixSeconds(b.Status.Expiration), []string{ns, name}})
	}
	if b.Status.NextRefreshTime != nil {
		out = append(out, series{renewalDesc, unixSeconds(b.Status.NextRefreshTime), []string{ns, name}})
	}
	ready := metav1.ConditionUnknown
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady); c != nil {
		ready = c.Status
	}
	for _, s := range [...]metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown} {
		v := 0.0
		if s == ready {
			v = 1
		}
		out = append(out, series{readyDesc, v, []string{ns, name, string(s)}})
	}
	if b.Status.PodsWithoutCredentials != nil {
		out = append(out, series{podsDesc, float64(*b.Status.PodsWithoutCredentials), []string{ns, name}})
	}
	return out
}

func unixSeconds(t *metav1.Time) float64 { return float64(t.Unix()) }
