// Package stsclient exchanges ServiceAccount tokens for temporary AWS
// credentials with STS AssumeRoleWithWebIdentity.
//
// The clients are built with sts.New, not config.LoadDefaultConfig, so nothing
// from the controller's own environment (AWS_* variables, profiles) leaks in.
// SDK retries are off: the controller owns backoff, and a second retry layer
// would multiply STS calls under throttling.
package stsclient

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"golang.org/x/time/rate"

	"github.com/stsbind/stsbind/internal/credentials"
)

// Request is one AssumeRoleWithWebIdentity call.
type Request struct {
	Region      string
	Endpoint    string // empty: the regional AWS endpoint
	RoleARN     string
	SessionName string
	Token       string
	Duration    time.Duration
	Policy      string
	PolicyARNs  []string
}

// Result is what STS returned.
type Result struct {
	Credentials    credentials.Credentials
	AssumedRoleARN string
	Subject        string
}

// Options configure a Client.
type Options struct {
	// QPS and Burst bound the STS calls of the whole process.
	QPS   float64
	Burst int
	// Timeout bounds one STS call.
	Timeout time.Duration
	// HTTPClient overrides the transport (tests); default a buildable client.
	HTTPClient sts.HTTPClient
}

// Client calls STS, sharing one SDK client per (region, endpoint) and one rate
// limit across all of them.
type Client struct {
	opts    Options
	limiter *rate.Limiter

	mu      sync.Mutex
	clients map[clientKey]*sts.Client
}

type clientKey struct{ region, endpoint string }

// New returns a Client.
func New(opts Options) *Client {
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = awshttp.NewBuildableClient().WithTimeout(opts.Timeout).WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = 64
		})
	}
	limit := rate.Limit(opts.QPS)
	if opts.QPS <= 0 {
		limit = rate.Inf
	}
	if opts.Burst < 1 {
		opts.Burst = 1
	}
	return &Client{opts: opts, limiter: rate.NewLimiter(limit, opts.Burst), clients: map[clientKey]*sts.Client{}}
}

func (c *Client) client(region, endpoint string) *sts.Client {
	k := clientKey{region, endpoint}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[k]; ok {
		return cl
	}
	o := sts.Options{
		Region:      region,
		HTTPClient:  c.opts.HTTPClient,
		Retryer:     aws.NopRetryer{},
		Credentials: aws.AnonymousCredentials{},
	}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
	}
	cl := sts.New(o)
	c.clients[k] = cl
	return cl
}

// AssumeRoleWithWebIdentity waits for the rate limit, then exchanges the token.
func (c *Client) AssumeRoleWithWebIdentity(ctx context.Context, req Request) (Result, error) {
	waitStart := time.Now()
	if err := c.limiter.Wait(ctx); err != nil {
		return Result{}, fmt.Errorf("waiting for the STS rate limit: %w", err)
	}
	start := time.Now()
	rateLimitWait.Observe(start.Sub(waitStart).Seconds())
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()

	in := &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(req.RoleARN),
		RoleSessionName:  aws.String(req.SessionName),
		WebIdentityToken: aws.String(req.Token),
		DurationSeconds:  aws.Int32(int32(req.Duration / time.Second)),
	}
	if req.Policy != "" {
		in.Policy = aws.String(req.Policy)
	}
	for _, arn := range req.PolicyARNs {
		in.PolicyArns = append(in.PolicyArns, ststypes.PolicyDescriptorType{Arn: aws.String(arn)})
	}
	out, err := c.client(req.Region, req.Endpoint).AssumeRoleWithWebIdentity(ctx, in)
	duration.Observe(time.Since(start).Seconds())
	requests.WithLabelValues(result(err)).Inc()
	if err != nil {
		return Result{}, err
	}
	if out.Credentials == nil || out.Credentials.Expiration == nil {
		return Result{}, fmt.Errorf("STS answered without credentials")
	}
	res := Result{Credentials: credentials.Credentials{
		AccessKeyID:     aws.ToString(out.Credentials.AccessKeyId),
		SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey),
		SessionToken:    aws.ToString(out.Credentials.SessionToken),
		Expiration:      out.Credentials.Expiration.UTC(),
	}, Subject: aws.ToString(out.SubjectFromWebIdentityToken)}
	if out.AssumedRoleUser != nil {
		res.AssumedRoleARN = aws.ToString(out.AssumedRoleUser.Arn)
	}
	return res, nil
}
