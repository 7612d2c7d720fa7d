package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

// runDir holds the machine-wide lock and the pointer to the current node's
// work dir, so that a run that died without Stop is cleaned up later.
const runDir = "/run/stsbind-node"

// state is what a node changed on the machine and how to put it back; it
// is written to <work dir>/state.json before the first change.
type state struct {
	Dir       string           `json:"dir"`
	Bridge    string           `json:"bridge"`
	PodCIDR   string           `json:"podCIDR"`
	IPForward string           `json:"ipForward"`
	IPTables  iptablesSnapshot `json:"iptables"`
}

func (s *state) save() error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "state.json"), raw, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(runDir, "current"), []byte(s.Dir), 0o600)
}

// restore undoes the node's changes once its processes are stopped: what
// is left of the pods and shims, mounts, pod cgroups, iptables rules, the
// bridge, ip_forward, and the work dir.
func (s *state) restore() error {
	killMatching(s.Dir)
	errs := []error{killPods(), unmountAll(s.Dir), killPods(), restoreIPTables(s.IPTables)}
	if nw, err := NewNetwork(s.Bridge, s.PodCIDR); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, nw.tearDown())
	}
	if s.IPForward != "" {
		errs = append(errs, writeIPForward(s.IPForward))
	}
	if err := errors.Join(errs...); err != nil {
		// Keep the dir and the pointer: the next run tries again.
		return err
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return err
	}
	return os.Remove(filepath.Join(runDir, "current"))
}

// cleanStale cleans up after a node whose run ended without Stop. The
// caller holds the lock, so that node is not running any more.
func cleanStale(log io.Writer) error {
	raw, err := os.ReadFile(filepath.Join(runDir, "current"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := strings.TrimSpace(string(raw))
	var s state
	stateRaw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		// Nothing was changed before state.json was written.
		_ = os.RemoveAll(dir)
		return os.Remove(filepath.Join(runDir, "current"))
	}
	if err := json.Unmarshal(stateRaw, &s); err != nil {
		return fmt.Errorf("%s/state.json: %w", dir, err)
	}
	fmt.Fprintf(log, "node: cleaning up after an earlier run in %s\n", dir)
	return s.restore()
}

// Clean takes the lock and cleans up after a run that ended without Stop.
func Clean(log io.Writer) error {
	lock, err := Acquire(time.Minute, log)
	if err != nil {
		return err
	}
	defer lock.Release()
	return cleanStale(log)
}

// Lock is the machine-wide node lock: one node at a time per machine.
type Lock struct{ f *os.File }

// Acquire takes the node lock, waiting up to timeout. Start takes it
// itself unless Options.Lock passes one held already (a test that looks at
// the machine before and after a node).
func Acquire(timeout time.Duration, log io.Writer) (*Lock, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(runDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s/lock (another node is running on this machine): %w", runDir, err)
		}
		if !said {
			fmt.Fprintf(log, "node: waiting up to %s for another node on this machine to stop\n", timeout)
		}
		time.Sleep(time.Second)
	}
}

// Release gives the lock up.
func (l *Lock) Release() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// connect builds the admin client and lets anyone read the issuer's
// discovery document and keys, as a cluster does for its outside STS.
func (n *Node) connect(ctx context.Context) error {
	cert, key, err := n.CA.Issue(CertRequest{CommonName: "stsbind-node-admin", Organization: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	n.Config = &rest.Config{
		Host:            n.APIServerURL,
		TLSClientConfig: rest.TLSClientConfig{CAData: n.CA.CertPEM, CertData: cert, KeyData: key},
		QPS:             100, Burst: 200,
	}
	if n.Client, err = client.New(n.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "stsbind-node-anonymous-oidc-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "system:unauthenticated"}},
	}
	return poll("allowing anonymous OIDC discovery", 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		err := n.Client.Create(ctx, crb)
		return err == nil || apierrors.IsAlreadyExists(err), err
	})
}
