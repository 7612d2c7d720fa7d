package clients

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJudgeCell(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	rot := rotation{oldKey: "OLD", newKey: "NEW", rotated: t0, cutoff: t0.Add(15 * time.Second)}
	sdk, cli := &awsClient{sdk: true}, &awsClient{}
	failed := errors.New("exit status 254")
	newKeyLine := `{"time":"2026-12-02T03:00:20Z","round":0,"accessKeyId":"NEW"}`
	unsignedLine := `{"time":"2026-12-02T03:00:20Z","round":0,"accessKeyId":"","error":"ClientException: AccessDenied"}`
	tests := map[string]struct {
		c     *awsClient
		claim cell
		o     observed
		want  result
		// problems: no verdict, and at least one problem.
		problems bool
	}{
		"an SDK that refreshes": {c: sdk, claim: cell{verdict: refreshes},
			o:    observed{oneShot: newKeyLine, oneShotKey: "NEW", long: longRun{verdict: refreshes, firstNew: t0.Add(1500 * time.Millisecond)}},
			want: result{verdict: refreshes, toNewKey: 1500 * time.Millisecond}},
		"an SDK that works until restart": {c: sdk, claim: cell{verdict: untilRestart, fails: cutOff},
			o:    observed{oneShot: newKeyLine, oneShotKey: "NEW", long: longRun{verdict: untilRestart}},
			want: result{verdict: untilRestart}},
		"a new container signing with the old key": {c: sdk, claim: cell{verdict: untilRestart, fails: cutOff},
			o: observed{oneShotKey: "OLD", long: longRun{verdict: untilRestart}}, problems: true},
		"an SDK that does not work": {c: sdk, claim: cell{verdict: doesNotWork, fails: noCredsAt},
			o:    observed{oneShot: unsignedLine, oneShotErr: failed, long: longRun{verdict: doesNotWork}},
			want: result{verdict: doesNotWork}},
		"a one-shot failing otherwise than claimed": {c: sdk, claim: cell{verdict: doesNotWork, fails: noCredsAt},
			o: observed{oneShot: `{"time":"2026-12-02T03:00:20Z","round":0,"accessKeyId":"OLD","error":"AccessDenied"}`, oneShotErr: failed,
				long: longRun{verdict: doesNotWork}}, problems: true},
		"a one-shot failing where the claim is that it works": {c: sdk, claim: cell{verdict: refreshes},
			o: observed{oneShot: unsignedLine, oneShotErr: failed, long: longRun{verdict: refreshes}}, problems: true},
		"a long-running writer with problems": {c: sdk, claim: cell{verdict: refreshes},
			o: observed{oneShotKey: "NEW", long: longRun{problems: []string{"round 3 failed"}}}, problems: true},
		"a CLI that refreshes": {c: cli, claim: cell{verdict: refreshes},
			o: observed{}, want: result{verdict: refreshes}},
		"a CLI that works until restart": {c: cli, claim: cell{verdict: untilRestart, fails: cutOff},
			o:    observed{after: "An error occurred (AccessDenied) when calling the PutObject operation", afterErr: failed},
			want: result{verdict: untilRestart}},
		"a CLI failing otherwise after the cutoff": {c: cli, claim: cell{verdict: untilRestart, fails: cutOff},
			o: observed{after: "An error occurred (ExpiredToken)", afterErr: failed}, problems: true},
		"a CLI that never worked in its first container": {c: cli, claim: cell{verdict: untilRestart, fails: cutOff},
			o: observed{beforeErr: failed, after: "AccessDenied", afterErr: failed}, problems: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, problems := judgeCell(tc.c, tc.claim, rot, tc.o)
			if tc.problems {
				if len(problems) == 0 || got.verdict != "" {
					t.Fatalf("want problems and no verdict, got %+v, %v", got, problems)
				}
				return
			}
			if len(problems) > 0 {
				t.Fatalf("problems: %v", problems)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}
