package clients

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// verdict is what a cell of the matrix says about a client in a mode.
type verdict string

const (
	refreshes    verdict = "refreshes"
	untilRestart verdict = "works until restart"
	doesNotWork  verdict = "does not work"
)

// write is one line of a writer's output: every SDK writer (s3client -loop,
// python/writer.py, js/writer.mjs, php/writer.php) prints the same JSON.
type write struct {
	Time  time.Time `json:"time"`
	Round int       `json:"round"`
	// AccessKeyID signed the request; empty: it went unsigned.
	AccessKeyID string `json:"accessKeyId"`
	Error       string `json:"error"`
}

// parseWrites reads a writer's lines, in round order; other lines are
// skipped.
func parseWrites(out string) []write {
	var ws []write
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var w write
		if json.Unmarshal(sc.Bytes(), &w) == nil && !w.Time.IsZero() {
			ws = append(ws, w)
		}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Round < ws[j].Round })
	return ws
}

// rotation is one rotation as the test drove it.
type rotation struct {
	oldKey, newKey string
	// rotated is when the new credentials were in the pod's mounts.
	rotated time.Time
	// cutoff is when MinIO stopped accepting oldKey.
	cutoff time.Time
	// fresh are more new keys (WebIdentity: each process calls STS itself
	// and gets its own).
	fresh map[string]bool
}

// isNew: k is a key issued by the rotation.
func (r rotation) isNew(k string) bool {
	return k != "" && (k == r.newKey || r.fresh[k])
}

// failure is how a cell that cannot work (or cannot go on) fails, as README
// says it does.
type failure struct {
	// says is in the error of every failed request.
	says string
	// unsigned: the client found no credentials and sent the request
	// unsigned.
	unsigned bool
}

func (f failure) matches(w write) bool {
	return w.Error != "" && strings.Contains(w.Error, f.says) && (!f.unsigned || w.AccessKeyID == "")
}

// cutoffSlack: a write started just before the cutoff reaches MinIO after
// it; writes this close to the cutoff are not judged.
const cutoffSlack = 2 * time.Second

// minAfterCutoff is how many writes past the cutoff a verdict needs.
const minAfterCutoff = 4

// minFailedWrites is how many writes a "does not work" verdict needs: a
// boto3 1.26 writer whose STS is unreachable spends 5–10 s retrying each.
const minFailedWrites = 2

// longRun is what a long-running writer's lines say.
type longRun struct {
	verdict verdict
	// firstNew is when the first write signed with the new key started.
	firstNew time.Time
	oldOK    int
	newOK    int
	failed   int
	problems []string
}

// judgeLongRunning decides a long-running writer's verdict across r:
//   - refreshes: every write succeeded, the new key came into use, and once
//     it did no write used another;
//   - works until restart: every write before the cutoff succeeded with the
//     old key, every one after it failed as f says, still with the old key;
//   - does not work: every write failed as f says (at least minFailedWrites
//     writes).
//
// Anything else is a problem with no verdict. Every other verdict needs
// writes with the old key before the rotation (else the rotation proved
// nothing) and minAfterCutoff judged writes after the cutoff.
func judgeLongRunning(ws []write, r rotation, f failure) longRun {
	var v longRun
	var beforeRotation, afterCutoff, failedAfter, failedEarly, oldAfter int
	allFailed := len(ws) > 0
	for _, w := range ws {
		at := fmt.Sprintf("round %d at %s", w.Round, w.Time.Format("15:04:05.000"))
		near := w.Time.After(r.cutoff.Add(-cutoffSlack)) && w.Time.Before(r.cutoff.Add(cutoffSlack))
		after := !near && w.Time.After(r.cutoff)
		if w.Time.Before(r.rotated) {
			beforeRotation++
		}
		if after {
			afterCutoff++
		}
		switch {
		case w.Error != "":
			v.failed++
			if !f.matches(w) {
				allFailed = false
				v.problems = append(v.problems, fmt.Sprintf("%s failed otherwise than %q (signed by %q): %s", at, f.says, w.AccessKeyID, w.Error))
			}
			if after && w.AccessKeyID == r.oldKey {
				failedAfter++
			}
			if w.Time.Before(r.cutoff.Add(-cutoffSlack)) {
				failedEarly++
			}
		case r.isNew(w.AccessKeyID):
			allFailed = false
			v.newOK++
			if v.firstNew.IsZero() {
				v.firstNew = w.Time
			}
		case w.AccessKeyID == r.oldKey:
			allFailed = false
			v.oldOK++
			if !v.firstNew.IsZero() {
				v.problems = append(v.problems, fmt.Sprintf("%s signed with the old key after the new one was in use", at))
			}
			if after {
				oldAfter++
			}
		default:
			allFailed = false
			v.problems = append(v.problems, fmt.Sprintf("%s succeeded signed with an unknown key %q", at, w.AccessKeyID))
		}
	}
	switch {
	// A writer that never had credentials needs no rotation to be judged,
	// only enough writes: a client whose every write waits out its own
	// retries (STS unreachable) writes few.
	case allFailed && len(ws) >= minFailedWrites:
		v.verdict = doesNotWork
		return v
	case afterCutoff < minAfterCutoff:
		v.problems = append(v.problems, fmt.Sprintf("only %d writes after the cutoff, want %d", afterCutoff, minAfterCutoff))
	case beforeRotation < 2 || v.oldOK == 0:
		v.problems = append(v.problems, fmt.Sprintf("%d writes before the rotation, %d with the old key: the writer started too late to show anything", beforeRotation, v.oldOK))
	case v.failed == 0 && v.newOK > 0 && oldAfter == 0:
		v.verdict = refreshes
	case v.newOK == 0 && failedEarly == 0 && failedAfter == afterCutoff:
		v.verdict = untilRestart
	}
	if v.verdict == "" && len(v.problems) == 0 {
		v.problems = append(v.problems, fmt.Sprintf("no verdict fits: %d writes with the old key, %d with the new one, %d failed (%d after the cutoff)",
			v.oldOK, v.newOK, v.failed, failedAfter))
	}
	if len(v.problems) > 0 {
		v.verdict = ""
	}
	return v
}

// judgeOneShot decides what one write says: nil when it succeeded, or when
// it failed as f says and fails is set.
func judgeOneShot(ws []write, f failure, fails bool) error {
	if len(ws) != 1 {
		return fmt.Errorf("%d writes, want 1", len(ws))
	}
	w := ws[0]
	switch {
	case w.Error == "" && !fails:
		return nil
	case w.Error == "":
		return fmt.Errorf("succeeded (signed by %q), want a failure saying %q", w.AccessKeyID, f.says)
	case !fails:
		return fmt.Errorf("failed: %s", w.Error)
	case !f.matches(w):
		return fmt.Errorf("failed otherwise than %q (unsigned %v, signed by %q): %s", f.says, f.unsigned, w.AccessKeyID, w.Error)
	}
	return nil
}
