package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AudienceGuard tells whether this cluster's API server itself accepts
// tokens of an audience. Such a token is a Kubernetes credential: stsbind
// never sends one to STS. The verdict comes from a TokenReview of a token
// just minted with that audience, and is kept per audience for TTL.
type AudienceGuard struct {
	// Client creates TokenReviews.
	Client client.Client
	// TTL is how long a verdict is kept; default one hour, so a changed
	// --api-audiences of the API server is noticed within it.
	TTL time.Duration

	mu       sync.Mutex
	verdicts map[string]audienceVerdict
	// reviews lets one TokenReview per audience be in flight: the workers
	// that start together on a new audience share its verdict instead of
	// each sending a review.
	reviews singleflight.Group
}

type audienceVerdict struct {
	acceptedByAPIServer bool
	at                  time.Time
}

// Known returns the kept verdict for audience, if there is a fresh one.
func (g *AudienceGuard) Known(audience string, now time.Time) (acceptedByAPIServer, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.verdicts[audience]
	if !ok || now.Sub(v.at) > g.ttl() {
		return false, false
	}
	return v.acceptedByAPIServer, true
}

// Check reviews token, minted with audience, at the API server, keeps and
// returns the verdict. The token goes nowhere but the API server.
func (g *AudienceGuard) Check(ctx context.Context, audience, token string, now time.Time) (acceptedByAPIServer bool, err error) {
	if accepted, ok := g.Known(audience, now); ok {
		return accepted, nil
	}
	v, err, _ := g.reviews.Do(audience, func() (any, error) {
		// A review that finished while this one waited to start.
		if accepted, ok := g.Known(audience, now); ok {
			return accepted, nil
		}
		// No audiences in the review: the API server checks against its own.
		tr := &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: token}}
		if err := g.Client.Create(ctx, tr); err != nil {
			return false, fmt.Errorf("reviewing a token of audience %q at the API server: %w", audience, err)
		}
		accepted := tr.Status.Authenticated
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.verdicts == nil {
			g.verdicts = map[string]audienceVerdict{}
		}
		g.verdicts[audience] = audienceVerdict{acceptedByAPIServer: accepted, at: now}
		return accepted, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

func (g *AudienceGuard) ttl() time.Duration {
	if g.TTL > 0 {
		return g.TTL
	}
	return time.Hour
}
