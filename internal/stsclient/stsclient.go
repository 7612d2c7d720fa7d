// Package stsclient exchanges ServiceAccount tokens for temporary AWS
// credentials with STS AssumeRoleWithWebIdentity.
//
// The clients are built with sts.New, not config.LoadDefaultConfig, so nothing
// from the controller's own environment (AWS_* variables, profiles) leaks in.
// SDK retries are off: the controller owns backoff, and a second retry layer
// would multiply STS calls under throttling.
//
// Every ClusterSTSProvider gets its own SDK client, rate limiter and timeout,
// so one provider's slowness or throttling never holds back another's.
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

// Provider is where a call goes and how fast: a ClusterSTSProvider's spec
// with defaults applied.
type Provider struct {
	Name     string
	Region   string
	Endpoint string // empty: the regional AWS endpoint
	QPS      float64
	Burst    int
	Timeout  time.Duration
}

// Request is one AssumeRoleWithWebIdentity call.
type Request struct {
	Provider    Provider
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
	// HTTPClient overrides the transport (tests); default a buildable client
	// whose timeout is each provider's.
	HTTPClient sts.HTTPClient
}

// Client calls STS with one SDK client and one rate limiter per provider.
type Client struct {
	opts Options

	mu        sync.Mutex
	providers map[string]*providerClient
}

// providerClient is one provider's SDK client and limiter, built for one
// version of the provider's settings.
type providerClient struct {
	cfg     Provider
	sts     *sts.Client
	limiter *rate.Limiter
}

// New returns a Client.
func New(opts Options) *Client {
	return &Client{opts: opts, providers: map[string]*providerClient{}}
}

// client returns the provider's client, built anew when its settings changed.
func (c *Client) client(p Provider) *providerClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pc, ok := c.providers[p.Name]; ok && pc.cfg == p {
		return pc
	}
	if p.Timeout <= 0 {
		p.Timeout = 30 * time.Second
	}
	var httpClient sts.HTTPClient = c.opts.HTTPClient
	if httpClient == nil {
		httpClient = awshttp.NewBuildableClient().WithTimeout(p.Timeout).WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = 64
		})
	}
	o := sts.Options{
		Region:      p.Region,
		HTTPClient:  httpClient,
		Retryer:     aws.NopRetryer{},
		Credentials: aws.AnonymousCredentials{},
	}
	if p.Endpoint != "" {
		o.BaseEndpoint = aws.String(p.Endpoint)
	}
	limit := rate.Limit(p.QPS)
	if p.QPS <= 0 {
		limit = rate.Inf
	}
	pc := &providerClient{cfg: p, sts: sts.New(o), limiter: rate.NewLimiter(limit, max(p.Burst, 1))}
	c.providers[p.Name] = pc
	return pc
}

// Forget drops a provider's client (the provider was deleted).
func (c *Client) Forget(provider string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.providers, provider)
}

// MaxRateLimitWait is the longest a call waits for its provider's rate
// limit; past it the call is not made and the caller retries later, so that
// an oversubscribed provider never holds the controller's workers.
const MaxRateLimitWait = time.Second

// RateLimitedError says a provider's rate limit had no room within
// MaxRateLimitWait; nothing was sent.
type RateLimitedError struct {
	Provider   string
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("ClusterSTSProvider %s is at its STS rate limit; retrying in %s", e.Provider, e.RetryAfter.Round(time.Millisecond))
}

// AssumeRoleWithWebIdentity waits for the provider's rate limit, then
// exchanges the token.
func (c *Client) AssumeRoleWithWebIdentity(ctx context.Context, req Request) (Result, error) {
	pc := c.client(req.Provider)
	waitStart := time.Now()
	reservation := pc.limiter.Reserve()
	if wait := reservation.Delay(); wait > MaxRateLimitWait {
		reservation.Cancel()
		return Result{}, &RateLimitedError{Provider: req.Provider.Name, RetryAfter: wait}
	} else if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			reservation.Cancel()
			return Result{}, fmt.Errorf("waiting for the STS rate limit of ClusterSTSProvider %s: %w", req.Provider.Name, ctx.Err())
		}
	}
	start := time.Now()
	rateLimitWait.Observe(start.Sub(waitStart).Seconds())
	ctx, cancel := context.WithTimeout(ctx, pc.cfg.Timeout)
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
	out, err := pc.sts.AssumeRoleWithWebIdentity(ctx, in)
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
