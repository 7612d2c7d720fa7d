package clients

import (
	"fmt"
	"strings"
)

// observed is what one client did in one mode.
type observed struct {
	// oneShot is a single call in a new container after the rotation,
	// signed by oneShotKey (SDKs).
	oneShot    string
	oneShotErr error
	oneShotKey string
	// long is the long-running writer's judgement (SDKs).
	long longRun
	// before and after are a CLI's calls in the container of before the
	// rotation, before and after the cutoff.
	before, after       string
	beforeErr, afterErr error
}

// judgeCell decides a cell's verdict from what the client did:
//   - does not work: the one-shot failed as the claim says (and so did
//     every long-running write);
//   - refreshes: the one-shot worked and the long-running writer refreshed,
//     or the CLI still works after the cutoff in the same container;
//   - works until restart: the one-shot (a restarted container) worked with
//     the new key, the long-running writer or the CLI in the same container
//     failed as the claim says after the cutoff.
func judgeCell(c *awsClient, claim cell, rot rotation, o observed) (result, []string) {
	var r result
	var problems []string
	if o.oneShotErr != nil {
		if claim.verdict != doesNotWork {
			return r, []string{fmt.Sprintf("one-shot: %v\n%s", o.oneShotErr, o.oneShot)}
		}
		var err error
		if c.sdk {
			err = judgeOneShot(parseWrites(o.oneShot), claim.fails, true)
		} else if !strings.Contains(o.oneShot, claim.fails.says) {
			err = fmt.Errorf("failed otherwise than %q: %s", claim.fails.says, o.oneShot)
		}
		if err != nil {
			return r, []string{"one-shot: " + err.Error()}
		}
		r.verdict = doesNotWork
	}
	switch {
	case c.sdk:
		problems = append(problems, o.long.problems...)
		if r.verdict == doesNotWork && o.long.verdict != doesNotWork {
			problems = append(problems, fmt.Sprintf("the one-shot failed, the long-running writer says %q", o.long.verdict))
		}
		r.verdict = o.long.verdict
		if r.verdict == refreshes {
			r.toNewKey = o.long.firstNew.Sub(rot.rotated)
		}
	case r.verdict == doesNotWork:
	case o.beforeErr != nil:
		problems = append(problems, fmt.Sprintf("before the cutoff, in the container of before the rotation: %v", o.beforeErr))
	case o.afterErr == nil:
		r.verdict = refreshes
	case strings.Contains(o.after, claim.fails.says):
		r.verdict = untilRestart
	default:
		problems = append(problems, fmt.Sprintf("after the cutoff, in the same container: %v, not %q", o.afterErr, claim.fails.says))
	}
	if r.verdict != doesNotWork && c.sdk && o.oneShotErr == nil && !rot.isNew(o.oneShotKey) {
		problems = append(problems, fmt.Sprintf("the one-shot in a new container signed with %q, not the new key", o.oneShotKey))
	}
	if len(problems) > 0 {
		r.verdict = ""
	}
	return r, problems
}
