package clients

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// projected is the pod's projected ServiceAccount token, as the app
// container mounts it.
type projected struct {
	path       string
	audience   string
	expiration int64
}

// projectedToken finds the app container's projected token (WebIdentity).
func projectedToken(pod *corev1.Pod) (projected, error) {
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken == nil {
			continue
		}
		src := v.Projected.Sources[0].ServiceAccountToken
		for _, c := range pod.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if c.Name == "app" && m.Name == v.Name && src.ExpirationSeconds != nil {
					return projected{path: filepath.Join(m.MountPath, src.Path), audience: src.Audience, expiration: *src.ExpirationSeconds}, nil
				}
			}
		}
	}
	return projected{}, fmt.Errorf("the app container mounts no projected ServiceAccount token with an expiration: %+v", pod.Spec.Volumes)
}

// kubeletTokens does kubelet's part for the projected token: a TokenRequest
// for the pod's ServiceAccount with the volume's audience and
// expirationSeconds, bound to the pod, written where the volume is mounted,
// and renewed at 80 % of its lifetime as kubelet does. The provider asks for
// 600 s (the shortest kubelet projects), so a column that takes about a
// minute reads the first token only; the renewal is kubelet's schedule, not
// something the column waits for.
func kubeletTokens(t *testing.T, p *matrixPod) {
	t.Helper()
	tok, err := projectedToken(p.pod)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mint := func() (time.Duration, error) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.pod.Spec.ServiceAccountName}}
		tr := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
			Audiences: []string{tok.audience}, ExpirationSeconds: &tok.expiration,
			BoundObjectRef: &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.pod.Name, UID: p.pod.UID},
		}}
		issued := time.Now()
		if err := k8s.SubResource("token").Create(ctx, sa, tr); err != nil {
			return 0, fmt.Errorf("TokenRequest for %s/%s: %w", p.ns, sa.Name, err)
		}
		if err := os.MkdirAll(filepath.Dir(tok.path), 0o755); err != nil {
			return 0, err
		}
		tmp := filepath.Join(filepath.Dir(tok.path), ".token.tmp")
		if err := os.WriteFile(tmp, []byte(tr.Status.Token), 0o444); err != nil {
			return 0, err
		}
		return tr.Status.ExpirationTimestamp.Sub(issued), os.Rename(tmp, tok.path)
	}
	lifetime, err := mint()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Logf("projected token written to %s: audience %s, lifetime %s (asked %d s)", tok.path, tok.audience, lifetime.Round(time.Second), tok.expiration)
	done := make(chan struct{})
	var renewErr error
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(lifetime * 8 / 10):
			}
			var err error
			if lifetime, err = mint(); err != nil {
				if ctx.Err() == nil {
					renewErr = err
				}
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = os.RemoveAll(filepath.Dir(tok.path))
		if renewErr != nil {
			t.Errorf("renewing the projected token: %v", renewErr)
		}
	})
}
