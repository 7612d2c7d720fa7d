package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/testrig/ststest"
	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// TestIssuesAndRefreshesCredentials is the main loop: binding -> token -> STS
// -> Secret -> Ready, then a refresh before expiry with new credentials.
func TestIssuesAndRefreshesCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	// Seconds-long credentials drive the refresh; the requested duration stays 1h.
	fake.SetLifetime(f.role, 9*time.Second)
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}]}`
	f.binding("s3-reader", func(b *stsbindv1.IAMRoleBinding) {
		b.Spec.Region = "eu-west-1"
		b.Spec.SessionPolicy = policy
		b.Spec.PolicyARNs = []stsbindv1.PolicyARN{"arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"}
	})

	b := f.waitReady("s3-reader", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	calls := fake.Calls(f.role)
	if len(calls) != 1 {
		t.Fatalf("STS calls = %d, want 1", len(calls))
	}
	call := calls[0]
	if got := ststest.Audience(call.Token); got != testAudience {
		t.Errorf("token audience = %q, want the provider's %q", got, testAudience)
	}
	if want := f.ns + ".s3-reader"; call.SessionName != want {
		t.Errorf("session name = %q, want %q", call.SessionName, want)
	}
	if call.DurationSeconds != 3600 || call.Policy != policy ||
		len(call.PolicyARNs) != 1 || call.PolicyARNs[0] != "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess" {
		t.Errorf("STS request = duration %d, policy %q, policyArns %v", call.DurationSeconds, call.Policy, call.PolicyARNs)
	}

	s := f.secret("s3-reader")
	issued := fake.Issued()
	var first ststest.Issued
	for _, iss := range issued {
		if iss.AccessKeyID == call.Answered {
			first = iss
		}
	}
	checkSecret(t, s, b, first, "eu-west-1")
	if b.Status.Subject != "system:serviceaccount:"+f.ns+":app" || !strings.Contains(b.Status.AssumedRoleARN, ":assumed-role/") {
		t.Errorf("status subject %q, assumedRoleArn %q", b.Status.Subject, b.Status.AssumedRoleARN)
	}
	if b.Status.SecretName != "s3-reader" || b.Status.Expiration == nil || !b.Status.Expiration.Time.Equal(first.Expiration) ||
		b.Status.NextRefreshTime == nil || !b.Status.NextRefreshTime.Before(b.Status.Expiration) {
		t.Errorf("status = %+v", b.Status)
	}
	f.waitEvent("s3-reader", corev1.EventTypeNormal, "CredentialsIssued")

	// The refresh comes before the first credentials expire, by itself.
	eventually(t, 20*time.Second, func() (bool, string) {
		s = f.secret("s3-reader")
		got := string(s.Data[credentials.KeyAccessKeyID])
		return got != first.AccessKeyID, "access key still " + got
	})
	refreshed := fake.Calls(f.role)
	if len(refreshed) != 2 {
		t.Fatalf("STS calls after one refresh = %d, want 2", len(refreshed))
	}
	if !refreshed[1].Time.Before(first.Expiration) {
		t.Errorf("refresh at %s, after the credentials expired at %s", refreshed[1].Time, first.Expiration)
	}
	f.waitEvent("s3-reader", corev1.EventTypeNormal, "CredentialsRefreshed")

	// Deleting the binding deletes the Secret through its owner reference
	// (envtest runs no garbage collector, so check the reference itself).
	ref := metav1.GetControllerOf(s)
	if ref == nil || ref.Kind != "IAMRoleBinding" || ref.UID != b.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Fatalf("Secret controller reference = %+v, want the binding %s", ref, b.UID)
	}
	if err := k8s.Delete(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// checkSecret checks every key of the Secret against what STS issued, with
// real readers for each format.
func checkSecret(t *testing.T, s *corev1.Secret, b *stsbindv1.IAMRoleBinding, iss ststest.Issued, region string) {
	t.Helper()
	if s.Type != stsbindv1.SecretType {
		t.Errorf("type = %q", s.Type)
	}
	if s.Labels[stsbindv1.LabelManagedBy] != "stsbind" || s.Labels[stsbindv1.LabelBinding] != b.Name {
		t.Errorf("labels = %v", s.Labels)
	}
	exp := iss.Expiration.Format(time.RFC3339)
	if s.Annotations[stsbindv1.AnnotationExpiration] != exp || s.Annotations[stsbindv1.AnnotationSpecHash] == "" {
		t.Errorf("annotations = %v, want expiration %s", s.Annotations, exp)
	}
	if _, err := time.Parse(time.RFC3339, s.Annotations[stsbindv1.AnnotationIssuedAt]); err != nil {
		t.Errorf("issued-at: %v", err)
	}
	want := map[string]string{
		credentials.KeyAccessKeyID:     iss.AccessKeyID,
		credentials.KeySecretAccessKey: iss.SecretAccessKey,
		credentials.KeySessionToken:    iss.SessionToken,
		credentials.KeyExpiration:      exp,
	}
	for k, v := range want {
		if string(s.Data[k]) != v {
			t.Errorf("data[%s] does not hold what STS issued", k)
		}
	}
	var proc map[string]any
	if err := json.Unmarshal(s.Data[credentials.KeyProcessJSON], &proc); err != nil {
		t.Fatalf("credentials.json: %v", err)
	}
	if proc["Version"] != float64(1) || proc["AccessKeyId"] != iss.AccessKeyID || proc["Expiration"] != exp {
		t.Errorf("credentials.json fields wrong (Version %v, Expiration %v)", proc["Version"], proc["Expiration"])
	}
	if !strings.Contains(string(s.Data[credentials.KeyConfigFile]), "region = "+region+"\n") ||
		!strings.Contains(string(s.Data[credentials.KeyConfigFile]), "credential_process = cat /var/run/secrets/stsbind.dev/"+b.Name+"/credentials.json") {
		t.Errorf("config key lacks region or credential_process")
	}
	if !strings.Contains(string(s.Data[credentials.KeyCredentialsFile]), "aws_access_key_id = "+iss.AccessKeyID+"\n") {
		t.Errorf("credentials key lacks the access key")
	}
}

// TestPermanentFaults: each permanent STS error code gives Ready=False with
// that reason and the server's message, one Warning event, and no hot loop.
func TestPermanentFaults(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"AccessDenied", "InvalidIdentityToken", "IDPRejectedClaim", "MalformedPolicyDocument", "InvalidParameterValue"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.serviceAccount()
			msg := "Not authorized to perform sts:AssumeRoleWithWebIdentity (" + code + " injected)"
			fake.SetFault(f.role, &ststest.Fault{Status: 403, Code: code, Message: msg})
			f.binding("denied", nil)
			b := f.waitReady("denied", metav1.ConditionFalse, code)
			c := b.Status.Conditions[0]
			if !strings.Contains(c.Message, msg) {
				t.Errorf("message %q lacks the server's text", c.Message)
			}
			ev := f.waitEvent("denied", corev1.EventTypeWarning, code)
			if !strings.Contains(ev.Note, msg) || ev.Action == "" {
				t.Errorf("event note %q, action %q", ev.Note, ev.Action)
			}
			// No hot loop: the slow retry is minutes away. A hot loop would
			// make hundreds of calls in this window.
			time.Sleep(2 * time.Second)
			if n := fake.CallCount(f.role); n > 2 {
				t.Errorf("%d STS calls within 2s of a permanent fault", n)
			}
			if n := len(f.events("denied")); n != 1 {
				t.Errorf("%d events, want one Warning", n)
			}
		})
	}
}

// TestPermanentFaultKeepsValidSecret: a spec change that STS refuses leaves
// the Secret with the previous, still valid credentials untouched.
func TestPermanentFaultKeepsValidSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	f.binding("keep", nil)
	b := f.waitReady("keep", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("keep")

	fake.SetFault(f.role, &ststest.Fault{Code: "AccessDenied", Message: "trust policy does not allow this session name"})
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "renamed" })
	b = f.waitCondition("keep", stsbindv1.ConditionUpToDate, metav1.ConditionFalse, "AccessDenied")
	if c := meta.FindStatusCondition(b.Status.Conditions, stsbindv1.ConditionUpToDate); !strings.Contains(c.Message, "keeps the previous credentials") {
		t.Errorf("message does not say the old credentials are kept: %s", c.Message)
	}
	f.waitReady("keep", metav1.ConditionTrue, stsbindv1.ReasonPreviousGenerationServed)
	after := f.secret("keep")
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Secret was written after a refused refresh")
	}

	// Fixing IAM is outside the cluster; a spec change retries at once.
	fake.SetFault(f.role, nil)
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "renamed-again" })
	f.waitReady("keep", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestThrottlingBacksOff: throttled calls back off exponentially with jitter
// and leave the current Secret untouched until a call succeeds.
func TestThrottlingBacksOff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	f.binding("throttled", nil)
	b := f.waitReady("throttled", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	before := f.secret("throttled")

	fake.SetFault(f.role, &ststest.Fault{Code: "Throttling", Message: "Rate exceeded", Times: 3})
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "throttled-2" })
	f.waitEvent("throttled", corev1.EventTypeWarning, "Throttling")
	if after := f.secret("throttled"); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Secret was written during throttling")
	}
	f.waitReady("throttled", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)

	calls := fake.Calls(f.role)
	if len(calls) != 5 { // first issue, 3 throttled, 1 success
		t.Fatalf("STS calls = %d, want 5", len(calls))
	}
	var gaps []time.Duration
	for i := 2; i < len(calls); i++ {
		gaps = append(gaps, calls[i].Time.Sub(calls[i-1].Time))
	}
	// Delays are drawn from [d/2, d] with d = 1s, 2s, 4s.
	if gaps[0] < 400*time.Millisecond || gaps[2] <= gaps[0] {
		t.Errorf("retry gaps %v do not back off", gaps)
	}
	if after := f.secret("throttled"); string(after.Data[credentials.KeyAccessKeyID]) != calls[4].Answered {
		t.Errorf("the Secret does not hold the credentials of the successful call")
	}
}

// TestServiceAccountAppearsLater: a binding waits with a clear reason and
// proceeds as soon as its ServiceAccount is created (the watch, not a poll).
func TestServiceAccountAppearsLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.binding("early", nil)
	b := f.waitReady("early", metav1.ConditionFalse, stsbindv1.ReasonServiceAccountNotFound)
	if !strings.Contains(b.Status.Conditions[0].Message, f.ns+"/app") {
		t.Errorf("message %q does not name the ServiceAccount", b.Status.Conditions[0].Message)
	}
	f.waitEvent("early", corev1.EventTypeWarning, stsbindv1.ReasonServiceAccountNotFound)
	if n := fake.CallCount(f.role); n != 0 {
		t.Errorf("%d STS calls without a ServiceAccount", n)
	}
	f.serviceAccount()
	// The safety-net requeue is 5 minutes away: only the watch can make this.
	f.waitReady("early", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestForeignSecretIsNeverOverwritten: a Secret of the same name that is not
// the binding's stays as it is, and so does one owned by another binding. A
// new binding finds a foreign Secret when it creates its own, after one STS
// call (the credentials are dropped); once refused, it reads the Secret
// before any STS call.
func TestForeignSecretIsNeverOverwritten(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "taken"},
		StringData: map[string]string{"password": "hunter2"},
	}
	f.create(foreign)
	f.binding("taken", nil)
	b := f.waitReady("taken", metav1.ConditionFalse, stsbindv1.ReasonSecretConflict)
	if !strings.Contains(b.Status.Conditions[0].Message, "spec.secretName") {
		t.Errorf("message %q does not say how to fix it", b.Status.Conditions[0].Message)
	}
	f.waitEvent("taken", corev1.EventTypeWarning, stsbindv1.ReasonSecretConflict)
	got := f.secret("taken")
	if string(got.Data["password"]) != "hunter2" || len(got.Data) != 1 || len(got.OwnerReferences) != 0 {
		t.Errorf("the foreign Secret was changed: %v keys, owners %v", len(got.Data), got.OwnerReferences)
	}
	if n := fake.CallCount(f.role); n > 1 {
		t.Errorf("%d STS calls before the conflict was reported, want at most 1", n)
	}
	calls := fake.CallCount(f.role)
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionName = "again" })
	f.waitReady("taken", metav1.ConditionFalse, stsbindv1.ReasonSecretConflict)
	if n := fake.CallCount(f.role) - calls; n != 0 {
		t.Errorf("%d STS calls for a binding already refused its Secret", n)
	}

	// Two bindings naming one Secret: the second is refused.
	f.binding("first", func(b *stsbindv1.IAMRoleBinding) { b.Spec.SecretName = "shared" })
	f.waitReady("first", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	f.binding("second", func(b *stsbindv1.IAMRoleBinding) { b.Spec.SecretName = "shared" })
	b = f.waitReady("second", metav1.ConditionFalse, stsbindv1.ReasonSecretConflict)
	if !strings.Contains(b.Status.Conditions[0].Message, "IAMRoleBinding first") {
		t.Errorf("message %q does not name the owner", b.Status.Conditions[0].Message)
	}
	if s := f.secret("shared"); s.Labels[stsbindv1.LabelBinding] != "first" {
		t.Errorf("the shared Secret now belongs to %q", s.Labels[stsbindv1.LabelBinding])
	}
}

// TestDriftIsRepaired: a deleted or edited Secret is re-minted with one STS
// call; one that only lost its labels is relabelled and kept.
func TestDriftIsRepaired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	f.binding("drift", nil)
	f.waitReady("drift", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	ctx := context.Background()

	// Lost labels: found with a live read, relabelled, no STS call.
	s := f.secret("drift")
	key := string(s.Data[credentials.KeyAccessKeyID])
	delete(s.Labels, stsbindv1.LabelManagedBy)
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() (bool, string) {
		s = f.secret("drift")
		return s.Labels[stsbindv1.LabelManagedBy] == "stsbind", "labels " + fmt.Sprint(s.Labels)
	})
	if n := fake.CallCount(f.role); n != 1 || string(s.Data[credentials.KeyAccessKeyID]) != key {
		t.Errorf("relabelling made %d STS calls in all, want 1, and must keep the credentials", n)
	}

	// Edited: re-minted.
	s.Data[credentials.KeyConfigFile] = []byte("[default]\nregion = nowhere\n")
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() (bool, string) {
		s = f.secret("drift")
		return string(s.Data[credentials.KeyAccessKeyID]) != key, "still the edited Secret"
	})
	if !strings.Contains(string(s.Data[credentials.KeyConfigFile]), "credential_process") {
		t.Errorf("the re-minted Secret lacks its config")
	}
	if n := fake.CallCount(f.role); n != 2 {
		t.Errorf("STS calls after an edit = %d, want 2", n)
	}

	// Deleted: written again.
	if err := k8s.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	key = string(s.Data[credentials.KeyAccessKeyID])
	eventually(t, 15*time.Second, func() (bool, string) {
		var again corev1.Secret
		if err := f.get(&again, "drift"); err != nil {
			return false, err.Error()
		}
		return string(again.Data[credentials.KeyAccessKeyID]) != key, "not re-minted"
	})
	if n := fake.CallCount(f.role); n != 3 {
		t.Errorf("STS calls after a delete = %d, want 3", n)
	}
}

// TestInvalidSessionPolicy: JSON validity is the controller's check: no STS
// call, no retry until the spec changes.
func TestInvalidSessionPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	b := f.binding("policy", func(b *stsbindv1.IAMRoleBinding) { b.Spec.SessionPolicy = `{"Version":` })
	f.waitReady("policy", metav1.ConditionFalse, stsbindv1.ReasonInvalidSessionPolicy)
	f.waitEvent("policy", corev1.EventTypeWarning, stsbindv1.ReasonInvalidSessionPolicy)
	if n := fake.CallCount(f.role); n != 0 {
		t.Errorf("%d STS calls for an invalid policy", n)
	}
	if err := f.get(b, "policy"); err != nil {
		t.Fatal(err)
	}
	f.update(b, func(s *stsbindv1.IAMRoleBindingSpec) { s.SessionPolicy = `{"Version":"2012-10-17","Statement":[]}` })
	f.waitReady("policy", metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
}

// TestRestartMakesNoSTSCalls: a controller that starts over Secrets that are
// still good keeps them all without calling STS.
func TestRestartMakesNoSTSCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	only := labels.NewSelector().Add(mustRequirement(labelRestart, selection.Equals, []string{"true"}))

	ctx, stop := context.WithCancel(context.Background())
	stopped, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		f.binding(fmt.Sprintf("restart-%d", i), func(b *stsbindv1.IAMRoleBinding) { b.Labels = map[string]string{labelRestart: "true"} })
	}
	for i := range n {
		f.waitReady(fmt.Sprintf("restart-%d", i), metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	}
	stop()
	<-stopped
	callsBefore := fake.CallCount(f.role)
	if callsBefore != n {
		t.Fatalf("first manager made %d STS calls for %d bindings", callsBefore, n)
	}

	// The second manager logs through its own named logger so the test can
	// see it reconcile every binding.
	restartLogs := &testenv.SyncBuffer{}
	logger := zap.New(zap.WriteTo(restartLogs), zap.Level(zapcore.Level(-2))).WithName("restarted")
	ctx, stop = context.WithCancel(context.Background())
	defer stop()
	if _, err := startManager(ctx, managerOptions{bindingSelector: only, skipNameCheck: true, logger: &logger}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		text := restartLogs.String()
		for i := range n {
			if !strings.Contains(text, fmt.Sprintf(`"name":"restart-%d"`, i)) || !strings.Contains(text, "Kept IAMRoleBinding credentials") {
				return false, fmt.Sprintf("restart-%d not reconciled yet", i)
			}
		}
		return true, ""
	})
	if got := fake.CallCount(f.role) - callsBefore; got != 0 {
		t.Errorf("restart made %d STS calls, want 0", got)
	}
	_, _ = logs.Write([]byte(restartLogs.String()))
}

// TestDefaultSessionNameIsShortened: long namespace and binding names still
// give a valid 64-character session name.
func TestDefaultSessionNameIsShortened(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.serviceAccount()
	name := "b-" + strings.Repeat("x", 55) + rand.String(4)
	f.binding(name, nil)
	f.waitReady(name, metav1.ConditionTrue, stsbindv1.ReasonCredentialsIssued)
	calls := fake.Calls(f.role)
	if len(calls) != 1 || len(calls[0].SessionName) > 64 || !strings.HasPrefix(calls[0].SessionName, f.ns+".b-xxx") {
		t.Errorf("session name %q", calls[0].SessionName)
	}
}
