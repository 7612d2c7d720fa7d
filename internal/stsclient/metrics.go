package stsclient

import (
	"errors"
	"regexp"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stsbind_sts_requests_total",
		Help: "AssumeRoleWithWebIdentity calls, by result: success, the AWS error code, or error when STS gave no answer.",
	}, []string{"result"})
	duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stsbind_sts_request_duration_seconds",
		Help:    "Duration of AssumeRoleWithWebIdentity calls, answered or not, after the rate limit.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	rateLimitWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stsbind_sts_rate_limit_wait_seconds",
		Help:    "Time calls waited for the --sts-qps/--sts-burst limit.",
		Buckets: []float64{.001, .01, .1, .5, 1, 5, 10, 30, 60},
	})
)

func init() {
	metrics.Registry.MustRegister(requests, duration, rateLimitWait)
}

// codeShape keeps the result label to error-code-like values.
var codeShape = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,63}$`)

// result is the metric label of a call's outcome; never the message, which
// may quote request values.
func result(err error) string {
	if err == nil {
		return "success"
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && codeShape.MatchString(apiErr.ErrorCode()) {
		return apiErr.ErrorCode()
	}
	return "error"
}
