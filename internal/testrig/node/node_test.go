package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stsbind/stsbind/internal/testrig/node"
)

func readyzViaService(n *node.Node) error {
	roots := x509.NewCertPool()
	roots.AddCert(n.CA.Cert)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Get("https://10.96.0.1/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		last = err
	}
	return last
}

// machine is what a node may change on this machine.
type machine struct {
	Links, IPTables, IPForward, Mounts, Cgroups string
	Current                                     bool
}

func snapshot(t *testing.T) machine {
	t.Helper()
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		return string(b)
	}
	var m machine
	for _, l := range strings.Split(out("ip", "-o", "link"), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			m.Links += f[1] + " "
		}
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			m.IPTables += out(bin, "-w", "-t", table, "-S") // -S: no counters
		}
	}
	raw, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	m.IPForward = string(raw)
	raw, _ = os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "stsbind-node-") {
			m.Mounts += l + "\n"
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	m.Cgroups = strings.Join(cg, " ")
	_, err := os.Stat("/run/stsbind-node/current")
	m.Current = err == nil
	return m
}

// TestStopLeavesNothing: a Start that fails after the bridge, control plane
// and containerd are up, and a full Start and Stop, both leave the machine
// as it was: links, iptables, ip_forward, mounts, pod cgroups.
func TestStopLeavesNothing(t *testing.T) {
	if err := node.Preflight(); err != nil {
		t.Fatal(err) // never a skip: CI runs as root
	}
	logf.SetLogger(logr.Discard())
	// Held across both Starts: no other node changes the machine meanwhile.
	lock, err := node.Acquire(30*time.Minute, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	before := snapshot(t)

	bogus := filepath.Join(t.TempDir(), "not-an-image.tar")
	if err := os.WriteFile(bogus, []byte("not a tar"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if n, err := node.Start(context.Background(), node.Options{Images: []string{bogus}, Log: &log, Lock: lock}); err == nil {
		_ = n.Stop()
		t.Fatal("Start imported a file that is no image")
	} else if !strings.Contains(err.Error(), "not-an-image.tar") {
		t.Errorf("Start failed elsewhere than at the import: %v\n%s", err, log.String())
	}
	if diff := cmp.Diff(before, snapshot(t)); diff != "" {
		t.Errorf("after a failed Start (-before +after):\n%s", diff)
	}

	n, err := node.Start(context.Background(), node.Options{Services: true, Log: &log, Lock: lock})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(n.Describe())
	// kube-proxy routes the host's own connections to the `kubernetes`
	// Service, as it does for the API server calling a webhook Service.
	if err := readyzViaService(n); err != nil {
		t.Errorf("the kubernetes Service: %v\nkube-proxy log:\n%s", err, n.LogTail("kube-proxy", 30))
	}
	if snapshot(t) == before {
		t.Error("a running node changed nothing on the machine: the snapshot sees nothing")
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if diff := cmp.Diff(before, snapshot(t)); diff != "" {
		t.Errorf("after Stop (-before +after):\n%s", diff)
	}
}
