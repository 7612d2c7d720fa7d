package clients

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJudgeLongRunning(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	r := rotation{oldKey: "OLD", newKey: "NEW", rotated: t0.Add(10 * time.Second), cutoff: t0.Add(20 * time.Second)}
	denied := failure{says: "AccessDenied"}
	// writes makes one write a second from t0, the key and error of each
	// chosen by its second.
	writes := func(n int, at func(s int) (key, err string)) []write {
		var ws []write
		for s := 0; s < n; s++ {
			k, e := at(s)
			ws = append(ws, write{Time: t0.Add(time.Duration(s) * time.Second), Round: s, AccessKeyID: k, Error: e})
		}
		return ws
	}
	switchAt := func(s int) func(int) (string, string) {
		return func(i int) (string, string) {
			if i < s {
				return "OLD", ""
			}
			return "NEW", ""
		}
	}
	tests := map[string]struct {
		ws   []write
		f    failure
		want verdict
		// wantFirstNew is the second of the first write with the new key.
		wantFirstNew int
		problems     bool
	}{
		"new key right after the rotation":                  {ws: writes(30, switchAt(11)), want: refreshes, wantFirstNew: 11},
		"new key at the declared expiry, before the cutoff": {ws: writes(30, switchAt(17)), want: refreshes, wantFirstNew: 17},
		"old key until the cutoff, then refused": {ws: writes(30, func(s int) (string, string) {
			if s < 20 {
				return "OLD", ""
			}
			return "OLD", "api error AccessDenied: Access Denied."
		}), f: denied, want: untilRestart},
		"refused unsigned from the start": {ws: writes(30, func(int) (string, string) { return "", "AccessDenied" }),
			f: failure{says: "AccessDenied", unsigned: true}, want: doesNotWork},
		"refused unsigned, a few slow writes (retries) all before the cutoff": {ws: writes(minFailedWrites, func(int) (string, string) { return "", "ProxyConnectionError" }),
			f: failure{says: "ProxyConnectionError", unsigned: true}, want: doesNotWork},
		"refused unsigned, too few writes to say": {ws: writes(minFailedWrites-1, func(int) (string, string) { return "", "AccessDenied" }),
			f: failure{says: "AccessDenied", unsigned: true}, problems: true},
		"signed refusals are not the unsigned failure": {ws: writes(30, func(int) (string, string) { return "OLD", "AccessDenied" }),
			f: failure{says: "AccessDenied", unsigned: true}, problems: true},
		"a failure between the rotation and the new key": {ws: writes(30, func(s int) (string, string) {
			if s == 21 {
				return "OLD", "AccessDenied"
			}
			return switchAt(22)(s)
		}), f: denied, problems: true},
		"back to the old key": {ws: writes(30, func(s int) (string, string) {
			if s == 15 {
				return "OLD", ""
			}
			return switchAt(12)(s)
		}), problems: true},
		"failing otherwise than README says": {ws: writes(30, func(s int) (string, string) {
			if s < 20 {
				return "OLD", ""
			}
			return "OLD", "ExpiredToken"
		}), f: denied, problems: true},
		"started after the rotation": {ws: writes(30, func(s int) (string, string) {
			if s < 11 {
				return "", "no writer yet"
			}
			return "NEW", ""
		})[11:], problems: true},
		"stopped before enough writes after the cutoff": {ws: writes(24, switchAt(11)), problems: true},
		"an unknown key": {ws: writes(30, func(s int) (string, string) {
			if s == 25 {
				return "OTHER", ""
			}
			return switchAt(11)(s)
		}), problems: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := judgeLongRunning(tc.ws, r, tc.f)
			if tc.problems {
				if len(v.problems) == 0 || v.verdict != "" {
					t.Fatalf("want problems and no verdict, got %q, %v", v.verdict, v.problems)
				}
				return
			}
			if len(v.problems) > 0 {
				t.Fatalf("problems: %v", v.problems)
			}
			if diff := cmp.Diff(tc.want, v.verdict); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
			if tc.want == refreshes && !v.firstNew.Equal(t0.Add(time.Duration(tc.wantFirstNew)*time.Second)) {
				t.Errorf("first new key at %s, want second %d", v.firstNew, tc.wantFirstNew)
			}
		})
	}
}

func TestJudgeOneShot(t *testing.T) {
	t.Parallel()
	unsigned := failure{says: "AccessDenied", unsigned: true}
	tests := map[string]struct {
		ws    []write
		fails bool
		ok    bool
	}{
		"works":                      {ws: []write{{AccessKeyID: "K"}}, ok: true},
		"fails when it should work":  {ws: []write{{Error: "AccessDenied"}}},
		"works when it should fail":  {ws: []write{{AccessKeyID: "K"}}, fails: true},
		"fails as README says":       {ws: []write{{Error: "ClientException: AccessDenied"}}, fails: true, ok: true},
		"fails signed, not unsigned": {ws: []write{{AccessKeyID: "K", Error: "AccessDenied"}}, fails: true},
		"no line":                    {},
		"two lines":                  {ws: []write{{}, {}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := judgeOneShot(tc.ws, unsigned, tc.fails); (err == nil) != tc.ok {
				t.Errorf("judgeOneShot = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
