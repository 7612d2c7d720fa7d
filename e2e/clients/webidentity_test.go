package clients

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/testrig/podview"
	"github.com/stsbind/stsbind/internal/testrig/stsfront"
	"github.com/stsbind/stsbind/webhook"
)

// webIdentityLifetime is from the start of the WebIdentity column to the
// declared expiry of the first web identity credentials: the writers start
// at once (no controller round to wait for), and on 2 loaded cores a Python
// client takes seconds to start and each CLI command seconds to finish.
const webIdentityLifetime = 30 * time.Second

// runWebIdentity measures the WebIdentity column. Every process calls
// AssumeRoleWithWebIdentity itself with the token the test projects (as
// kubelet does). "Rotation" is the SDK's own: until 5 s before the first
// credentials' declared expiry the STS front answers every exchange of the
// pod's session with those same credentials (each token still verified by
// MinIO), from then on each exchange gets new credentials of its own, and
// MinIO refuses the first ones 3 s after their declared expiry (the cutoff). Clients that ignore
// AWS_ENDPOINT_URL_STS would send the token to AWS STS: each client runs
// behind its own guard proxy on loopback that records and refuses every
// connection, so nothing leaves the machine and the test sees where it went.
func runWebIdentity(t *testing.T, m mode, programs map[*awsClient]string) map[string]result {
	start := time.Now()
	expires := start.Add(webIdentityLifetime).Truncate(time.Second)
	cutoff := expires.Add(3 * time.Second)
	// New keys from 5 s before the declared expiry: botocore refuses
	// credentials that a refresh returns already expired, and a real STS
	// never answers with ones that expire within a second.
	rotates := expires.Add(-5 * time.Second)
	p := newMatrixPod(t, m, stsfront.Plan{Cutoff: cutoff, Expiration: expires, ReplayUntil: rotates})
	checkWebIdentityPod(t, p)
	kubeletTokens(t, p)
	bucket := strings.ToLower(m.name) + "-" + strings.ToLower(rand.String(6))
	rootPut(t, bucket)

	guards, views := map[*awsClient]*guard{}, map[*awsClient]*podview.View{}
	for _, c := range matrixClients {
		guards[c] = startGuard(t)
		views[c] = guards[c].view(p.app)
	}
	end := cutoff.Add(cutoffSlack + (minAfterCutoff+3)*time.Second)
	writers, cliBefore := map[*awsClient]*process{}, map[*awsClient]*process{}
	for _, c := range matrixClients {
		if c.sdk {
			writers[c] = startProcess(t, views[c], c.argv(programs[c], bucket, "long-"+shortName(c), end))
		} else {
			cliBefore[c] = startProcess(t, views[c], c.argv(programs[c], bucket, "before-"+shortName(c), time.Time{}))
		}
	}
	t.Logf("binding Ready, token projected and writers started %s after the start; new keys from %s, first credentials declared to expire at %s, cut off at %s",
		time.Since(start).Round(time.Millisecond), rotates.Format("15:04:05"), expires.Format("15:04:05"), cutoff.Format("15:04:05"))

	obs := map[*awsClient]*observed{}
	for _, c := range matrixClients {
		obs[c] = &observed{}
		if !c.sdk {
			out, err := cliBefore[c].wait(t, rotates)
			obs[c].before, obs[c].beforeErr = out, judgeCommand(c, out, err)
		}
	}
	// From now on every exchange gets new credentials.
	time.Sleep(time.Until(rotates))
	rot := rotation{oldKey: front.Issued(p.ns), rotated: rotates, cutoff: cutoff}
	if rot.oldKey == "" {
		t.Fatalf("no client exchanged its token at the front before the rotation")
	}
	for _, c := range matrixClients {
		o := obs[c]
		out, err := runOnce(t, views[c], c.argv(programs[c], bucket, "once-"+shortName(c), time.Time{}))
		o.oneShot, o.oneShotErr = out, judgeCommand(c, out, err)
		if ws := parseWrites(out); len(ws) == 1 {
			o.oneShotKey = ws[0].AccessKeyID
		}
	}

	time.Sleep(time.Until(cutoff.Add(cutoffSlack)))
	id, secret, token := front.First(p.ns)
	staticOldKeyFails(t, &corev1.Secret{Data: map[string][]byte{
		credentials.KeyAccessKeyID: []byte(id), credentials.KeySecretAccessKey: []byte(secret), credentials.KeySessionToken: []byte(token),
	}}, bucket)
	for _, c := range matrixClients {
		if !c.sdk {
			out, err := runOnce(t, views[c], c.argv(programs[c], bucket, "after-"+shortName(c), time.Time{}))
			obs[c].after, obs[c].afterErr = out, judgeCommand(c, out, err)
		}
	}

	for _, c := range matrixClients {
		if c.sdk {
			out, err := writers[c].wait(t, end.Add(30*time.Second))
			if err != nil {
				t.Errorf("%s's writer exited: %v\n%s", c.name, err, out)
			}
		}
	}
	// Every exchange after the declared expiry got a key of its own.
	rot.fresh = map[string]bool{}
	for _, k := range front.Later(p.ns) {
		rot.fresh[k] = true
	}
	results := map[string]result{}
	for _, c := range matrixClients {
		claim, o := m.cells[c.name], obs[c]
		if c.sdk {
			o.long = judgeLongRunning(parseWrites(writers[c].out.String()), rot, claim.fails)
		}
		t.Run(c.name, func(t *testing.T) {
			if tried := guards[c].tried(); tried != claim.tried {
				t.Errorf("sent its token (through the guard) to %q, README says %q", tried, claim.tried)
			}
			if c.sdk {
				t.Logf("long-running: %d writes with the first key, %d with new ones, %d failed", o.long.oldOK, o.long.newOK, o.long.failed)
			}
			r, problems := judgeCell(c, claim, rot, *o)
			for _, p := range problems {
				t.Error(p)
			}
			if r.verdict == refreshes && c.sdk {
				t.Logf("FIGURE first request signed with a new key %.1f s after new keys were handed out, %.1f s after the declared expiry, %.1f s after the cutoff",
					r.toNewKey.Seconds(), o.long.firstNew.Sub(expires).Seconds(), o.long.firstNew.Sub(cutoff).Seconds())
			}
			if r.verdict != claim.verdict {
				t.Errorf("measured %q, README says %q (%s)", r.verdict, claim.verdict, claim.why)
			}
			if t.Failed() {
				if c.sdk {
					t.Logf("writer output:\n%s", writers[c].out.String())
				}
				t.Logf("one-shot output:\n%s", o.oneShot)
			}
			results[c.name] = r
		})
	}
	return results
}

// checkWebIdentityPod checks that the webhook gave the app container the
// variables README lists, pointing at the front, and the provider's token.
func checkWebIdentityPod(t *testing.T, p *matrixPod) {
	t.Helper()
	want := map[string]string{
		webhook.EnvRoleARN:              minio.RoleARN,
		webhook.EnvWebIdentityTokenFile: credentials.MountDir(p.binding) + "/" + webhook.WebIdentityTokenPath,
		webhook.EnvRoleSessionName:      p.ns,
		webhook.EnvEndpointURLSTS:       front.URL,
		webhook.EnvSTSRegionalEndpoints: "regional",
		"AWS_REGION":                    region,
	}
	for k, v := range want {
		if got := p.app.Lookup(k); got != v {
			t.Errorf("the app container's %s is %q, want %q", k, got, v)
		}
	}
	if _, err := projectedToken(p.pod); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// tried is what a guard saw, comma-separated, in order.
func (g *guard) tried() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.hosts, ",")
}
