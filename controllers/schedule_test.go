package controllers

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestDecideRefresh(t *testing.T) {
	t.Parallel()
	issued := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	exp := issued.Add(time.Hour)
	held := func(mod func(*heldCredentials)) *heldCredentials {
		h := &heldCredentials{SpecHash: "h1", IssuedAt: issued, Expiration: exp, Intact: true}
		if mod != nil {
			mod(h)
		}
		return h
	}
	ten := 10 * time.Minute
	fortyFive := 45 * time.Minute
	uid := types.UID("3f2c1c1e-0000-4000-8000-000000000001")
	defaultAt := refreshTime(issued, exp, nil, uid)

	tests := map[string]struct {
		in        refreshInput
		wantNow   bool
		wantWhy   string
		wantAfter time.Time // RefreshAt must be in [wantAfter, wantBefore]
		wantBy    time.Time
	}{
		"no secret": {
			in:      refreshInput{SpecHash: "h1", UID: uid, Now: issued},
			wantNow: true, wantWhy: dueSecretMissing,
		},
		"edited secret": {
			in:      refreshInput{SpecHash: "h1", Held: held(func(h *heldCredentials) { h.Intact = false }), UID: uid, Now: issued},
			wantNow: true, wantWhy: dueSecretEdited,
		},
		"spec changed": {
			in:      refreshInput{SpecHash: "h2", Held: held(nil), UID: uid, Now: issued.Add(time.Minute)},
			wantNow: true, wantWhy: dueSpecChanged,
		},
		"fresh credentials are kept, default is a third of the lifetime minus jitter": {
			in:        refreshInput{SpecHash: "h1", Held: held(nil), UID: uid, Now: issued.Add(time.Minute)},
			wantAfter: exp.Add(-20*time.Minute - 2*time.Minute), wantBy: exp.Add(-20 * time.Minute),
		},
		"explicit refreshBefore": {
			in:        refreshInput{SpecHash: "h1", Held: held(nil), RefreshBefore: &ten, UID: uid, Now: issued},
			wantAfter: exp.Add(-11 * time.Minute), wantBy: exp.Add(-10 * time.Minute),
		},
		"explicit refreshBefore above half the lifetime is capped at half": {
			in:        refreshInput{SpecHash: "h1", Held: held(nil), RefreshBefore: &fortyFive, UID: uid, Now: issued},
			wantAfter: exp.Add(-33 * time.Minute), wantBy: exp.Add(-30 * time.Minute),
		},
		"refresh time reached": {
			in:      refreshInput{SpecHash: "h1", Held: held(nil), UID: uid, Now: defaultAt},
			wantNow: true, wantWhy: dueRefresh,
		},
		"expired": {
			in:      refreshInput{SpecHash: "h1", Held: held(nil), UID: uid, Now: exp.Add(time.Hour)},
			wantNow: true, wantWhy: dueRefresh,
		},
		"server granted less than asked: 15m lifetime refreshes after 10m": {
			in: refreshInput{SpecHash: "h1", Held: held(func(h *heldCredentials) { h.Expiration = issued.Add(15 * time.Minute) }),
				UID: uid, Now: issued},
			wantAfter: issued.Add(15*time.Minute - 5*time.Minute - 30*time.Second), wantBy: issued.Add(10 * time.Minute),
		},
		"lifetime of seconds (tests)": {
			in: refreshInput{SpecHash: "h1", Held: held(func(h *heldCredentials) { h.Expiration = issued.Add(6 * time.Second) }),
				UID: uid, Now: issued.Add(time.Second)},
			wantAfter: issued.Add(4*time.Second - 200*time.Millisecond), wantBy: issued.Add(4 * time.Second),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := decideRefresh(tc.in)
			if got.RefreshNow != tc.wantNow || got.Why != tc.wantWhy {
				t.Fatalf("decideRefresh() = %+v, want now=%v why=%q", got, tc.wantNow, tc.wantWhy)
			}
			if tc.wantNow {
				return
			}
			if got.RefreshAt.Before(tc.wantAfter) || got.RefreshAt.After(tc.wantBy) {
				t.Errorf("RefreshAt = %s, want within [%s, %s]", got.RefreshAt, tc.wantAfter, tc.wantBy)
			}
			if !got.RefreshAt.After(tc.in.Now) {
				t.Errorf("RefreshAt = %s is not after now %s", got.RefreshAt, tc.in.Now)
			}
		})
	}
}

func TestJitterBoundsAndSpread(t *testing.T) {
	t.Parallel()
	const d = 20 * time.Minute
	seen := map[time.Duration]bool{}
	var lo, hi time.Duration = d, 0
	for i := range 1000 {
		uid := types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
		j := jitter(d, uid)
		if j < 0 || j > d/10 {
			t.Fatalf("jitter(%s) = %s, outside [0, %s]", uid, j, d/10)
		}
		if j != jitter(d, uid) {
			t.Fatalf("jitter(%s) is not deterministic", uid)
		}
		seen[j.Truncate(time.Second)] = true
		lo, hi = min(lo, j), max(hi, j)
	}
	// 1000 bindings created together must not renew in the same second.
	if len(seen) < 100 {
		t.Errorf("1000 UIDs fell into only %d distinct seconds of jitter", len(seen))
	}
	if hi-lo < d/20 {
		t.Errorf("jitter spread %s..%s covers less than half of the 10%% window", lo, hi)
	}
}

func TestSchedulingExpiration(t *testing.T) {
	t.Parallel()
	issued := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		exp     time.Time
		session time.Duration
		want    time.Time
	}{
		"as granted":            {issued.Add(time.Hour), time.Hour, issued.Add(time.Hour)},
		"shorter than asked":    {issued.Add(15 * time.Minute), time.Hour, issued.Add(15 * time.Minute)},
		"far future is clamped": {issued.Add(1000 * time.Hour), time.Hour, issued.Add(time.Hour)},
		"no session known":      {issued.Add(1000 * time.Hour), 0, issued.Add(1000 * time.Hour)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := schedulingExpiration(issued, tc.exp, tc.session); !got.Equal(tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// A held Secret with a far-future expiration is refreshed on the
	// requested session's schedule, not in 1000 hours.
	d := decideRefresh(refreshInput{SpecHash: "h", Held: &heldCredentials{SpecHash: "h", IssuedAt: issued, Expiration: issued.Add(1000 * time.Hour), Intact: true},
		Session: time.Hour, UID: "u", Now: issued})
	if d.RefreshNow || d.RefreshAt.After(issued.Add(time.Hour)) {
		t.Errorf("far-future expiration scheduled at %s, want within the 1h session", d.RefreshAt)
	}
}

func TestExpiredOnArrival(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		exp     time.Time
		refused bool
	}{
		"an hour left":      {now.Add(time.Hour), false},
		"one second left":   {now.Add(time.Second), false},
		"expiring now":      {now, true},
		"expired an hour":   {now.Add(-time.Hour), true},
		"skewed by a month": {now.Add(-30 * 24 * time.Hour), true},
	} {
		if got := expiredOnArrival(now, tc.exp) != ""; got != tc.refused {
			t.Errorf("%s: refused = %v, want %v", name, got, tc.refused)
		}
	}
}
