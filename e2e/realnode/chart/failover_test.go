package chart

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
)

// maxRefreshCalls bounds the STS calls of one binding's refresh across a
// failover: the old leader's (answered or abandoned) and the new leader's.
const maxRefreshCalls = 2

// TestLeaderDeletedMidRefresh: several bindings come due together on the
// in-test STS, slowed so that their calls are in flight; the leader pod is
// deleted then. The other replica takes the lease, every binding stays
// Ready with unexpired credentials throughout, each is refreshed, and none
// costs more than maxRefreshCalls STS calls.
func TestLeaderDeletedMidRefresh(t *testing.T) {
	requireChart(t)
	ctx := context.Background()
	sts := newTestSTS(t)
	ns := suite.Namespace(t, "failover", nil)
	const n = 6
	const latency = 3 * time.Second
	// 90 s credentials refreshed a third of that (less 0-10 % jitter)
	// before expiry: about 30 s of margin for the failover. (refreshBefore
	// itself is at least 5m; the default third is what shrinks here.)
	var roles []string
	for i := range n {
		roles = append(roles, roleARN(fmt.Sprintf("%s-b%d", ns, i)))
		sts.SetLifetime(roles[i], 90*time.Second)
	}
	bs := sts.bindings(t, ns, n)
	before := map[string]int{}
	oldKeys := map[string]string{}
	var latest time.Time
	for i, b := range bs {
		// The refreshed credentials last the hour asked for: one round.
		sts.SetLifetime(roles[i], 0)
		before[roles[i]] = sts.CallCount(roles[i])
		oldKeys[b.Name] = string(secretOf(t, b).Data["AWS_ACCESS_KEY_ID"])
		if err := suite.Client.Get(ctx, client.ObjectKeyFromObject(b), b); err != nil {
			t.Fatal(err)
		}
		if next := b.Status.NextRefreshTime.Time; next.After(latest) {
			latest = next
		}
	}
	sts.SetLatency(latency)

	if err := poll(time.Until(latest)+30*time.Second, func() error {
		if sts.InFlight() == 0 {
			return errors.New("no STS call in flight")
		}
		return nil
	}); err != nil {
		t.Fatalf("the refreshes never started (last due %s): %v\n%s", latest.Format("15:04:05"), err, operatorLogs())
	}
	leader := leaseHolder(t)
	inFlight := sts.InFlight()
	deleted := time.Now()
	if err := suite.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: leader}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted leader %s with %d STS calls in flight, %d s before the last binding's refresh was due",
		leader, inFlight, int(time.Until(latest).Seconds()))

	var newLeader string
	var tookOver, refreshed time.Duration
	broken := map[string]string{}
	err := poll(2*time.Minute, func() error {
		if newLeader == "" {
			if h := leaseHolder(t); h != "" && h != leader {
				newLeader, tookOver = h, time.Since(deleted)
			}
		}
		var list stsbindv1.IAMRoleBindingList
		if err := suite.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		now := time.Now()
		for _, b := range list.Items {
			c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionReady)
			switch {
			case c == nil || c.Status != metav1.ConditionTrue:
				broken[b.Name] = fmt.Sprintf("not Ready at %s: %+v", now.Format("15:04:05.000"), c)
			case b.Status.Expiration == nil || !b.Status.Expiration.After(now):
				broken[b.Name] = fmt.Sprintf("credentials expired at %s", now.Format("15:04:05.000"))
			}
		}
		var secrets corev1.SecretList
		if err := suite.Client.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
			return err
		}
		done := 0
		for _, s := range secrets.Items {
			if old, ok := oldKeys[s.Name]; ok && string(s.Data["AWS_ACCESS_KEY_ID"]) != old {
				done++
			}
		}
		if done == n && refreshed == 0 {
			refreshed = time.Since(deleted)
		}
		switch {
		case newLeader == "":
			return fmt.Errorf("lease still held by %q", leaseHolder(t))
		case done < n:
			return fmt.Errorf("%d of %d bindings refreshed", done, n)
		case !sts.Quiet(latency + time.Second):
			return errors.New("STS calls still coming in")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after deleting the leader: %v\n%s", err, operatorLogs())
	}
	t.Logf("FIGURE failover: %s took the lease %s after the leader's deletion; all %d bindings refreshed after %s",
		newLeader, tookOver.Round(time.Millisecond), n, refreshed.Round(time.Millisecond))
	for name, why := range broken {
		t.Errorf("binding %s: %s", name, why)
	}

	var counts []string
	for _, role := range roles {
		calls := sts.CallCount(role) - before[role]
		counts = append(counts, fmt.Sprint(calls))
		if calls < 1 || calls > maxRefreshCalls {
			t.Errorf("%s: %d STS calls for one refresh; want 1 to %d", role, calls, maxRefreshCalls)
		}
	}
	sort.Strings(counts)
	t.Logf("FIGURE STS calls per binding for the refresh across the failover: %s", strings.Join(counts, " "))
	waitOperator(t, map[string]bool{leader: true})
}
