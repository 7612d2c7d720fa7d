package chart

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// write is one line of the s3client's -loop output.
type write struct {
	Time        time.Time `json:"time"`
	Round       int       `json:"round"`
	AccessKeyID string    `json:"accessKeyId"`
	Error       string    `json:"error"`
}

// parseWrites reads the -loop lines of a log, in round order; other lines
// (SDK warnings) are skipped.
func parseWrites(log string) []write {
	var out []write
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var w write
		if json.Unmarshal(sc.Bytes(), &w) == nil && !w.Time.IsZero() {
			out = append(out, w)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Round < out[j].Round })
	return out
}

// rotationVerdict is what a long-running client's writes say about one
// rotation from oldKey to newKey.
type rotationVerdict struct {
	oldOK, newOK int
	// firstNew is the first write signed with newKey that succeeded.
	firstNew time.Time
	// explained are failed writes between the revocation of oldKey and
	// firstNew: the mounted files still held oldKey, kubelet had not
	// delivered the new Secret yet.
	explained int
	// afterRevocation counts the writes that succeeded after it.
	afterRevocation int
	problems        []string
}

// revocationSlack: a write started just before the cutoff reaches MinIO
// after it.
const revocationSlack = 2 * time.Second

// judgeRotation checks a client's writes across a rotation. The client
// re-reads its credentials on every request once the old ones are declared
// expired (credential_process past its Expiration, the container endpoint
// within the SDK's 5-minute window), so the key it signs with is what its
// mounted files hold at that moment. Therefore:
//   - before the first write with newKey, writes use oldKey; one may fail
//     only once oldKey is revoked (unsigned: the sidecar refuses expired
//     credentials), which is kubelet's lag and nothing else;
//   - from the first write with newKey on, every write uses it and succeeds.
func judgeRotation(writes []write, oldKey, newKey string, revoked time.Time) rotationVerdict {
	var v rotationVerdict
	for _, w := range writes {
		at := w.Time.Format("15:04:05.000")
		switch {
		case !v.firstNew.IsZero() && (w.Error != "" || w.AccessKeyID != newKey):
			v.problems = append(v.problems, fmt.Sprintf("round %d at %s, after the new key was in use: key %q, error %q", w.Round, at, w.AccessKeyID, w.Error))
		case w.Error == "" && w.AccessKeyID == newKey:
			if v.firstNew.IsZero() {
				v.firstNew = w.Time
			}
			v.newOK++
		case w.Error == "" && w.AccessKeyID == oldKey:
			v.oldOK++
		case w.Error == "":
			v.problems = append(v.problems, fmt.Sprintf("round %d at %s signed with an unknown key %q", w.Round, at, w.AccessKeyID))
		case w.Time.Before(revoked.Add(-revocationSlack)):
			v.problems = append(v.problems, fmt.Sprintf("round %d at %s failed before the old key was revoked (%s): key %q, %s",
				w.Round, at, revoked.Format("15:04:05"), w.AccessKeyID, w.Error))
		case w.AccessKeyID != oldKey && w.AccessKeyID != "":
			v.problems = append(v.problems, fmt.Sprintf("round %d at %s failed with key %q: %s", w.Round, at, w.AccessKeyID, w.Error))
		default:
			v.explained++
		}
		if w.Error == "" && w.Time.After(revoked) {
			v.afterRevocation++
		}
	}
	if v.oldOK == 0 {
		v.problems = append(v.problems, "no write succeeded with the old key: the client started after the rotation")
	}
	if v.firstNew.IsZero() {
		v.problems = append(v.problems, "no write succeeded with the new key")
	}
	return v
}

func TestJudgeRotation(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	revoked := t0.Add(10 * time.Second)
	w := func(sec int, key, err string) write {
		return write{Time: t0.Add(time.Duration(sec) * time.Second), Round: sec, AccessKeyID: key, Error: err}
	}
	tests := map[string]struct {
		writes                  []write
		problems, explained, ok int
	}{
		"switch before revocation": {writes: []write{w(1, "OLD", ""), w(5, "NEW", ""), w(12, "NEW", "")}, ok: 1},
		"kubelet late: old key refused, then new": {
			writes: []write{w(1, "OLD", ""), w(10, "OLD", "403"), w(11, "", "Expired"), w(13, "NEW", "")}, explained: 2, ok: 1},
		"failure before revocation":  {writes: []write{w(1, "OLD", ""), w(5, "OLD", "403"), w(12, "NEW", "")}, problems: 1, ok: 1},
		"old key after the new one":  {writes: []write{w(1, "OLD", ""), w(5, "NEW", ""), w(6, "OLD", "")}, problems: 1},
		"failure after the new one":  {writes: []write{w(1, "OLD", ""), w(5, "NEW", ""), w(11, "NEW", "500")}, problems: 1},
		"never the new key":          {writes: []write{w(1, "OLD", ""), w(11, "OLD", "403")}, problems: 1, explained: 1},
		"started after the rotation": {writes: []write{w(1, "NEW", ""), w(11, "NEW", "")}, problems: 1, ok: 1},
		"a third key":                {writes: []write{w(1, "OLD", ""), w(2, "OTHER", ""), w(12, "NEW", "")}, problems: 1, ok: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := judgeRotation(tc.writes, "OLD", "NEW", revoked)
			if len(v.problems) != tc.problems || v.explained != tc.explained || v.afterRevocation != tc.ok {
				t.Errorf("problems %q, explained %d, ok after revocation %d; want %d, %d, %d",
					v.problems, v.explained, v.afterRevocation, tc.problems, tc.explained, tc.ok)
			}
		})
	}
}
