package controllers

import (
	"fmt"
	"hash/fnv"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Why the controller goes to STS; also the wording of the log line.
const (
	dueSecretMissing = "secret missing"
	dueSecretEdited  = "secret edited"
	dueSpecChanged   = "spec changed"
	dueRefresh       = "refresh due"
)

// heldCredentials is what the controller knows of the Secret it wrote.
type heldCredentials struct {
	SpecHash   string
	IssuedAt   time.Time
	Expiration time.Time
	// Intact is false when keys were removed or edited after the controller wrote them.
	Intact bool
}

// refreshInput is everything the refresh decision depends on.
type refreshInput struct {
	SpecHash      string
	Held          *heldCredentials // nil: no Secret of ours
	RefreshBefore *time.Duration   // nil: a third of the actual lifetime
	// Session is the requested duration: STS never grants more, so an
	// Expiration past issued-at plus Session is scheduled as if it were there.
	Session time.Duration
	UID     types.UID
	Now     time.Time
}

// refreshDecision says whether to call STS now and, if not, when.
type refreshDecision struct {
	RefreshNow bool
	Why        string    // when RefreshNow
	RefreshAt  time.Time // when !RefreshNow
}

// decideRefresh is the controller's one scheduling decision. Credentials are
// kept while their refresh time is in the future and the spec they were
// minted for is the current one, so a restarted controller makes no STS call
// for a Secret that is still good.
func decideRefresh(in refreshInput) refreshDecision {
	switch {
	case in.Held == nil:
		return refreshDecision{RefreshNow: true, Why: dueSecretMissing}
	case !in.Held.Intact:
		return refreshDecision{RefreshNow: true, Why: dueSecretEdited}
	case in.Held.SpecHash != in.SpecHash:
		return refreshDecision{RefreshNow: true, Why: dueSpecChanged}
	}
	at := refreshTime(in.Held.IssuedAt, schedulingExpiration(in.Held.IssuedAt, in.Held.Expiration, in.Session), in.RefreshBefore, in.UID)
	if !at.After(in.Now) {
		return refreshDecision{RefreshNow: true, Why: dueRefresh}
	}
	return refreshDecision{RefreshAt: at}
}

// schedulingExpiration is the expiration the schedule trusts: at most
// issued-at plus the requested session. A far-future Expiration (a server's
// mistake, a skewed clock) would otherwise never be refreshed.
func schedulingExpiration(issuedAt, expiration time.Time, session time.Duration) time.Time {
	if session > 0 && expiration.After(issuedAt.Add(session)) {
		return issuedAt.Add(session)
	}
	return expiration
}

// expiredOnArrival says why fresh credentials cannot be used: they expire
// at or before the moment they were received. Writing them and scheduling
// from them would refresh every second, forever. Empty when they are fine.
func expiredOnArrival(received, expiration time.Time) string {
	if expiration.After(received) {
		return ""
	}
	return fmt.Sprintf("STS returned credentials that expire at %s, not after they were received at %s; the clocks of STS and the controller disagree by at least %s. The Secret keeps its current credentials",
		expiration.UTC().Format(time.RFC3339), received.UTC().Format(time.RFC3339), received.Sub(expiration).Round(time.Second))
}

// refreshTime is expiration − refreshBefore − jitter. The default refreshBefore
// is a third of the actual lifetime; an explicit one is capped at half of it,
// so a server that grants less than was asked for still leaves the credentials
// in use for a while. The jitter, 0–10 % of refreshBefore, comes from the
// binding's UID: the same binding always gets the same offset, and bindings
// created together spread out instead of renewing in one storm.
func refreshTime(issuedAt, expiration time.Time, refreshBefore *time.Duration, uid types.UID) time.Time {
	lifetime := expiration.Sub(issuedAt)
	if lifetime < 0 {
		lifetime = 0
	}
	before := lifetime / 3
	if refreshBefore != nil {
		before = min(*refreshBefore, lifetime/2)
	}
	return expiration.Add(-before - jitter(before, uid))
}

// jitter is a deterministic fraction (0 to 10 %) of d derived from uid.
func jitter(d time.Duration, uid types.UID) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	frac := float64(h.Sum64()%10001) / 10000 // 0..1
	return time.Duration(frac * 0.1 * float64(d))
}
