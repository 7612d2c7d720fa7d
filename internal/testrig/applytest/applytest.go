// Package applytest checks install manifests against a real API server: it
// runs the pinned helm and kustomize from bin/, decodes what they render and
// applies it to an envtest kube-apiserver with server-side dry run.
package applytest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stsbind/stsbind/internal/testrig/testenv"
)

const fieldManager = "stsbind-install-test"

// Tool returns bin/<name>, installed by `make <name>` at the version pinned in
// the Makefile. Without it the test is skipped, except in CI (CI=true), where
// a missing tool fails it.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "bin", name)
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("%s not found at %s: run 'make %s'", name, path, name)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// Run runs a tool in the repository root and returns its standard output.
func Run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(tool, args...)
	cmd.Dir = testenv.RepoRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(tool), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// Decode splits a YAML stream into objects, dropping empty documents.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Find returns the object of that kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Into converts an object to a typed one.
func Into(o *unstructured.Unstructured, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out)
}

// Applier applies objects to an API server with server-side apply.
type Applier struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
	// Namespace is given to namespaced objects that name none.
	Namespace string
}

// NewApplier connects to the API server behind cfg.
func NewApplier(cfg *rest.Config, namespace string) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{
		dyn:       dyn,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		Namespace: namespace,
	}, nil
}

// EnsureNamespace creates a namespace for real.
func (a *Applier) EnsureNamespace(ctx context.Context, name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	_, err := a.dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ApplyCRDs applies CustomResourceDefinitions for real, so that the custom
// resources after them can be checked, and waits until they are established.
func (a *Applier) ApplyCRDs(ctx context.Context, crds []*unstructured.Unstructured) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, crd := range crds {
		if err := a.apply(ctx, crd, false); err != nil {
			return err
		}
		err := waitFor(ctx, 30*time.Second, func() (bool, error) {
			got, err := a.dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				if c, ok := c.(map[string]any); ok && c["type"] == "Established" && c["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", crd.GetName(), err)
		}
	}
	a.mapper.Reset()
	return nil
}

// DryRun applies each object with server-side dry run (nothing is stored)
// and returns how many the API server accepted and the errors of the others.
func (a *Applier) DryRun(ctx context.Context, objs []*unstructured.Unstructured) (accepted int, errs []error) {
	for _, o := range objs {
		if err := a.apply(ctx, o, true); err != nil {
			errs = append(errs, err)
			continue
		}
		accepted++
	}
	return accepted, errs
}

// Installed says what Install did.
type Installed struct {
	CRDs     int      // applied for real
	Accepted int      // accepted by a server-side dry run
	Tried    int      // objects dry-run
	Skipped  []string // "Kind name" of objects whose group has no CRD here
}

// Install applies objs as an install would reach the API server: the CRDs
// for real (so the custom resources after them can be checked), everything
// else with server-side dry run, except objects of skipGroups, whose CRDs
// (cert-manager's, prometheus-operator's) are not installed here. errs holds
// the refusals.
func (a *Applier) Install(ctx context.Context, objs []*unstructured.Unstructured, skipGroups ...string) (Installed, []error) {
	var res Installed
	var crds, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch {
		case o.GetKind() == "CustomResourceDefinition":
			crds = append(crds, o)
		case slices.Contains(skipGroups, o.GroupVersionKind().Group):
			res.Skipped = append(res.Skipped, o.GetKind()+" "+o.GetName())
		default:
			rest = append(rest, o)
		}
	}
	if len(crds) == 0 {
		return res, []error{fmt.Errorf("no CustomResourceDefinition among the %d objects", len(objs))}
	}
	if err := a.ApplyCRDs(ctx, crds); err != nil {
		return res, []error{err}
	}
	res.CRDs, res.Tried = len(crds), len(rest)
	var errs []error
	res.Accepted, errs = a.DryRun(ctx, rest)
	return res, errs
}

func (a *Applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	desc := fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a CRD applied since the last discovery
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", desc, err)
	}
	o = o.DeepCopy()
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			o.SetNamespace(a.Namespace)
		}
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		desc = fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
	}
	data, err := o.MarshalJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", desc, err)
	}
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: ptr.To(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts); err != nil {
		return fmt.Errorf("%s: %w", desc, err)
	}
	return nil
}

// ManagerFlags returns the flags main.go defines, with their defaults as
// written there (string defaults only; others map to ""), plus the zap flags.
func ManagerFlags() (map[string]string, error) {
	src, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "main.go"))
	if err != nil {
		return nil, err
	}
	flags := map[string]string{}
	re := regexp.MustCompile(`flag\.(\w+)Var\(&[\w.]+, "([a-z0-9-]+)", ("[^"]*")?`)
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		flags[m[2]] = strings.Trim(m[3], `"`)
	}
	if len(flags) == 0 {
		return nil, errors.New("no flag definitions found in main.go")
	}
	fs := flag.NewFlagSet("zap", flag.ContinueOnError)
	(&zap.Options{}).BindFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { flags[f.Name] = f.DefValue })
	return flags, nil
}

// UnknownFlags returns the --flags among args that main.go does not define.
func UnknownFlags(args []string, flags map[string]string) []string {
	var unknown []string
	for _, arg := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		if !strings.HasPrefix(arg, "--") {
			unknown = append(unknown, arg)
			continue
		}
		if _, ok := flags[name]; !ok {
			unknown = append(unknown, arg)
		}
	}
	return unknown
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
