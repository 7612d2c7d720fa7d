// Package stsclient obtains temporary AWS credentials from STS: a
// ServiceAccount token exchanged with AssumeRoleWithWebIdentity, or an IAM
// user's keys used with AssumeRole, GetFederationToken or GetSessionToken,
// optionally followed by a chained AssumeRole; and GetCallerIdentity.
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

// Operation is an STS operation that returns credentials.
type Operation string

const (
	AssumeRoleWithWebIdentity Operation = "AssumeRoleWithWebIdentity"
	AssumeRole                Operation = "AssumeRole"
	GetFederationToken        Operation = "GetFederationToken"
	GetSessionToken           Operation = "GetSessionToken"
)

// Request is one call that returns credentials.
type Request struct {
	Provider  Provider
	Operation Operation // default AssumeRoleWithWebIdentity
	// Token is the web identity token (AssumeRoleWithWebIdentity).
	Token string
	// Signer holds the credentials that sign every other operation.
	Signer *credentials.Credentials

	RoleARN     string // AssumeRole*
	SessionName string // AssumeRole*; the federated user's name for GetFederationToken
	Duration    time.Duration
	Policy      string   // not for GetSessionToken
	PolicyARNs  []string // not for GetSessionToken
	// Tags, TransitiveTagKeys, ExternalID and SourceIdentity: AssumeRole
	// (Tags also for GetFederationToken).
	Tags              map[string]string
	TransitiveTagKeys []string
	ExternalID        string
	SourceIdentity    string
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

// Issue waits for the provider's rate limit, then calls the operation.
func (c *Client) Issue(ctx context.Context, req Request) (Result, error) {
	if req.Operation == "" {
		req.Operation = AssumeRoleWithWebIdentity
	}
	pc := c.client(req.Provider)
	if err := c.wait(ctx, pc, req.Provider.Name); err != nil {
		return Result{}, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, pc.cfg.Timeout)
	defer cancel()
	res, err := call(ctx, pc.sts, req)
	duration.Observe(time.Since(start).Seconds())
	requests.WithLabelValues(string(req.Operation), result(err)).Inc()
	return res, err
}

// CallerIdentity asks STS whose credentials c are (GetCallerIdentity).
func (c *Client) CallerIdentity(ctx context.Context, p Provider, creds credentials.Credentials) (arn, account string, err error) {
	pc := c.client(p)
	if err := c.wait(ctx, pc, p.Name); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, pc.cfg.Timeout)
	defer cancel()
	out, err := pc.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}, signedBy(&creds))
	requests.WithLabelValues("GetCallerIdentity", result(err)).Inc()
	if err != nil {
		return "", "", err
	}
	return aws.ToString(out.Arn), aws.ToString(out.Account), nil
}

func (c *Client) wait(ctx context.Context, pc *providerClient, provider string) error {
	waitStart := time.Now()
	reservation := pc.limiter.Reserve()
	if wait := reservation.Delay(); wait > MaxRateLimitWait {
		reservation.Cancel()
		return &RateLimitedError{Provider: provider, RetryAfter: wait}
	} else if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			reservation.Cancel()
			return fmt.Errorf("waiting for the STS rate limit of ClusterSTSProvider %s: %w", provider, ctx.Err())
		}
	}
	rateLimitWait.Observe(time.Since(waitStart).Seconds())
	return nil
}

// AssumeRoleWithWebIdentity is Issue for a web identity token.
func (c *Client) AssumeRoleWithWebIdentity(ctx context.Context, req Request) (Result, error) {
	req.Operation = AssumeRoleWithWebIdentity
	return c.Issue(ctx, req)
}
