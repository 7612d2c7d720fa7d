package stsclient

import (
	"errors"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stsbind_sts_requests_total",
		Help: "STS calls, by operation and result: success, a known AWS error code, other for any other code, or error when STS gave no answer.",
	}, []string{"operation", "result"})
	duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stsbind_sts_request_duration_seconds",
		Help:    "Duration of STS calls that return credentials, answered or not, after the rate limit.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	rateLimitWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stsbind_sts_rate_limit_wait_seconds",
		Help:    "Time calls waited for their ClusterSTSProvider's rate limit.",
		Buckets: []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60},
	})
)

func init() {
	metrics.Registry.MustRegister(requests, duration, rateLimitWait)
}

// result is the metric label of a call's outcome: a bounded set of values,
// whatever codes a server makes up; never the message, which may quote
// request values.
func result(err error) string {
	if err == nil {
		return "success"
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return "error"
	}
	if code := apiErr.ErrorCode(); PermanentCodes[code] || TransientCodes[code] {
		return code
	}
	return "other"
}
