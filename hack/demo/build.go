package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/stsbind/stsbind/internal/testrig/images"
)

// asset is something hack/ builds from the Go module proxy on the first run
// and caches in the user cache dir; its script prints the result on stdout
// and, only when it builds, progress on stderr.
type asset struct {
	what     string
	script   string
	env      string // the variable that names a result and makes the rigs skip the script
	prefix   string // of the script's own progress lines
	expected string
}

var (
	envtestAssets = asset{"kube-apiserver, etcd, kubectl", "hack/envtest-assets.sh", "KUBEBUILDER_ASSETS", "envtest-assets:", "about 6 min"}
	nodeAssets    = asset{"kubelet, controller-manager, scheduler, kube-proxy", "hack/node-assets.sh", "STSBIND_NODE_ASSETS", "node-assets:", "about 4-5 min"}
	minioAsset    = asset{"MinIO server", "hack/minio.sh", "STSBIND_MINIO", "minio:", "about 4-5 min"}
)

func cacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "stsbind")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "stsbind")
}

// ensure runs the asset's script, says whether it was cached, and sets the
// asset's variable so that the rigs take the result from there.
func ensure(ctx context.Context, root string, a asset) error {
	fmt.Printf("      %-52s ", a.what)
	if v := os.Getenv(a.env); v != "" {
		fmt.Printf("from $%s\n", a.env)
		return nil
	}
	t := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(root, a.script))
	// Its own process group: an interrupt ends the go builds under it too,
	// and bash still runs the script's cleanup trap.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	built := false
	var other []string // the module fetch's chatter, shown only on failure
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if !built {
			built = true
			fmt.Printf("not cached: building (%s on 2 cores)\n", a.expected)
		}
		if strings.HasPrefix(line, a.prefix) {
			fmt.Printf("        %s\n", line)
		} else if other = append(other, line); len(other) > 30 {
			other = other[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		if !built {
			fmt.Println()
		}
		return fmt.Errorf("%s: %w\n%s", a.script, err, strings.Join(other, "\n"))
	}
	out := strings.TrimSpace(stdout.String())
	if built {
		fmt.Printf("        built in %s\n", since(t))
	} else {
		fmt.Printf("cached (%s)\n", since(t))
	}
	return os.Setenv(a.env, out)
}

// ensureHelm returns bin/helm, built with `make helm` when missing.
func ensureHelm(ctx context.Context, root string) (string, error) {
	helm := filepath.Join(root, "bin", "helm")
	fmt.Printf("      %-52s ", "helm (bin/helm)")
	if st, err := os.Stat(helm); err == nil && st.Mode()&0o111 != 0 {
		fmt.Println("cached")
		return helm, nil
	}
	fmt.Println("not built: make helm (built from the module proxy at its pinned version, a few minutes)")
	t := time.Now()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", root, "helm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make helm: %w\n%s", err, out)
	}
	fmt.Printf("        built in %s\n", since(t))
	return helm, nil
}

// buildImages compiles the operator, the sidecar, the S3 client and pause
// and packs the images as OCI layout tars in dir.
func buildImages(ctx context.Context, root, dir string) ([]string, error) {
	fmt.Printf("      %-52s ", "images (go build: 1-8 min cold on 2 cores)")
	t := time.Now()
	tars, err := images.Build(ctx, root, dir)
	if err != nil {
		fmt.Println()
		return nil, err
	}
	var names, paths []string
	for name, path := range tars {
		names = append(names, name)
		paths = append(paths, path)
	}
	sort.Strings(names)
	fmt.Printf("built in %s\n        %s\n", since(t), strings.Join(names, ", "))
	return paths, nil
}
