package clients

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"

	stsbindv1 "github.com/stsbind/stsbind/api/v1alpha1"
	"github.com/stsbind/stsbind/internal/credentials"
	"github.com/stsbind/stsbind/internal/testrig/stsfront"
)

// declaredLifetime is the first credentials' declared lifetime: the
// controller refreshes them after two thirds of it, so the clients must be
// writing with them before then. MinIO stops accepting them 3 s after it.
const declaredLifetime = 36 * time.Second

// result is one measured cell.
type result struct {
	verdict verdict
	// toNewKey is from the rotation to the first request signed with the
	// new key (long-running SDKs that refresh).
	toNewKey time.Duration
}

// TestClientMatrix measures every client in every mode (see the package
// doc), compares each cell with what README claims, and README's table with
// the cells. The modes run in parallel, each with its own binding, pod and
// rotation; within a mode the long-running writers run side by side.
func TestClientMatrix(t *testing.T) {
	programs := resolveClients(t)
	var mu sync.Mutex
	results := map[string]map[string]result{}
	t.Run("mode", func(t *testing.T) {
		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				t.Parallel()
				run := runMode
				if m.injection == stsbindv1.InjectionWebIdentity {
					run = runWebIdentity
				}
				r := run(t, m, programs)
				mu.Lock()
				results[m.name] = r
				mu.Unlock()
			})
		}
	})
	var figures []string
	for _, m := range modes {
		for _, c := range matrixClients {
			if r := results[m.name][c.name]; r.verdict == refreshes && c.sdk {
				figures = append(figures, fmt.Sprintf("%s, %s: %.1f s", m.name, c.name, r.toNewKey.Seconds()))
			}
		}
	}
	t.Logf("FIGURE rotation to the first request signed with the new key (the old credentials declared to expire about %.0f s after the rotation; WebIdentity: 5 s):\n  %s",
		declaredLifetime.Seconds()/3, strings.Join(figures, "\n  "))
	// README is checked against a whole matrix only (-run may pick modes).
	if t.Failed() || len(results) != len(modes) {
		return
	}
	checkREADME(t, results)
}

// runMode measures one column. Only the long-running writers and each CLI's
// first call start before the rotation (the controller's, on its own
// schedule); the one-shots run after it, so that on a loaded machine nothing
// holds the writers back.
func runMode(t *testing.T, m mode, programs map[*awsClient]string) map[string]result {
	start := time.Now()
	expires := start.Add(declaredLifetime).Truncate(time.Second)
	cutoff := expires.Add(3 * time.Second)
	p := newMatrixPod(t, m, stsfront.Plan{Cutoff: cutoff, Expiration: expires})
	rot := rotation{oldKey: string(p.secret.Data[credentials.KeyAccessKeyID]), cutoff: cutoff}
	if issued := front.Issued(p.ns); issued != rot.oldKey {
		t.Fatalf("the Secret holds %q, the planned first credentials were %q: the rotation would prove nothing", rot.oldKey, issued)
	}
	rotatedCh := p.kubeletSync(rot.oldKey, cutoff)
	bucket := strings.ToLower(m.name) + "-" + strings.ToLower(rand.String(6))
	rootPut(t, bucket)

	// The long-running writers, one per SDK, until a few writes past the cutoff.
	end := cutoff.Add(cutoffSlack + (minAfterCutoff+3)*time.Second)
	// Beside them, each CLI once in the same container, long before the
	// cutoff.
	writers, cliBefore := map[*awsClient]*process{}, map[*awsClient]*process{}
	for _, c := range matrixClients {
		if c.sdk {
			writers[c] = startProcess(t, p.app, c.argv(programs[c], bucket, "long-"+shortName(c), end))
		} else {
			cliBefore[c] = startProcess(t, p.app, c.argv(programs[c], bucket, "before-"+shortName(c), time.Time{}))
		}
	}
	t.Logf("binding Ready, pod viewed and writers started %s after the start; first credentials declared to expire at %s, cut off at %s",
		time.Since(start).Round(time.Millisecond), expires.Format("15:04:05"), cutoff.Format("15:04:05"))

	fresh := <-rotatedCh
	switch {
	case fresh.err != nil:
		t.Fatalf("writing the rotated Secret to the mounts: %v", fresh.err)
	case fresh.rotated == nil:
		t.Fatalf("the controller had not refreshed the credentials by the cutoff %s", cutoff.Format("15:04:05"))
	}
	rot.newKey, rot.rotated = string(fresh.secret.Data[credentials.KeyAccessKeyID]), fresh.rotated.rotated
	t.Logf("rotated at %s (%s after the start), %s before the declared expiry", rot.rotated.Format("15:04:05.000"),
		rot.rotated.Sub(start).Round(time.Millisecond), expires.Sub(rot.rotated).Round(time.Millisecond))

	obs := map[*awsClient]*observed{}
	for _, c := range matrixClients {
		obs[c] = &observed{}
		if !c.sdk {
			out, err := cliBefore[c].wait(t, cutoff)
			obs[c].before, obs[c].beforeErr = out, judgeCommand(c, out, err)
		}
	}
	// Every client once in a new container: a pod started now, or
	// restarted, sees the current Secret.
	t0 := time.Now()
	for _, c := range matrixClients {
		o := obs[c]
		out, err := runOnce(t, fresh.app, c.argv(programs[c], bucket, "once-"+shortName(c), time.Time{}))
		o.oneShot, o.oneShotErr = out, judgeCommand(c, out, err)
		if ws := parseWrites(out); len(ws) == 1 {
			o.oneShotKey = ws[0].AccessKeyID
		}
	}
	t.Logf("the one-shots took %s", time.Since(t0).Round(time.Millisecond))

	// After the cutoff: each CLI again in the container it ran in before.
	time.Sleep(time.Until(cutoff.Add(cutoffSlack)))
	staticOldKeyFails(t, p.secret, bucket)
	for _, c := range matrixClients {
		if !c.sdk {
			out, err := runOnce(t, p.app, c.argv(programs[c], bucket, "after-"+shortName(c), time.Time{}))
			obs[c].after, obs[c].afterErr = out, judgeCommand(c, out, err)
		}
	}

	results := map[string]result{}
	for _, c := range matrixClients {
		claim := m.cells[c.name]
		o := obs[c]
		if c.sdk {
			out, err := writers[c].wait(t, end.Add(30*time.Second))
			if err != nil {
				t.Errorf("%s's writer exited: %v\n%s", c.name, err, out)
			}
			o.long = judgeLongRunning(parseWrites(out), rot, claim.fails)
		}
		t.Run(c.name, func(t *testing.T) {
			if c.sdk {
				t.Logf("long-running: %d writes with the old key, %d with the new one, %d failed", o.long.oldOK, o.long.newOK, o.long.failed)
			}
			r, problems := judgeCell(c, claim, rot, *o)
			for _, p := range problems {
				t.Error(p)
			}
			if r.verdict == refreshes && c.sdk {
				t.Logf("FIGURE first request signed with the new key %.1f s after the rotation", r.toNewKey.Seconds())
			}
			if r.verdict != claim.verdict {
				t.Errorf("measured %q, README says %q (%s)", r.verdict, claim.verdict, claim.why)
			}
			if t.Failed() && c.sdk {
				t.Logf("writer output:\n%s", writers[c].out.String())
			}
			results[c.name] = r
		})
	}
	return results
}

func shortName(c *awsClient) string {
	return strings.ToLower(strings.NewReplacer(" ", "", ",", "", "(", "", ")", "", ".", "").Replace(c.name))
}

// judgeCommand: nil when a one-shot worked (a CLI exited 0, an SDK's
// single write succeeded).
func judgeCommand(c *awsClient, out string, err error) error {
	if !c.sdk {
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		return nil
	}
	return judgeOneShot(parseWrites(out), failure{}, false)
}
