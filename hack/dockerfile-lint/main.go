// Command dockerfile-lint runs BuildKit's Dockerfile checks (the rules behind
// `docker build --check`) without a Docker engine or a registry, and exits
// non-zero on any warning or error.
//
//	go run . ../../Dockerfile
//
// Base images are not pulled: their configuration is stubbed as a non-empty
// image of the requested platform, so rules about the base image's own
// environment cannot fire; every other rule runs as in a real build.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/util/system"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint DOCKERFILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		n, err := lint(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		if n > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: no warnings\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// lint prints the findings for one Dockerfile and returns how many there were.
func lint(path string) (int, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sm := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	sm.Definition = &llb.Definition{} // the results need one; no LLB is built
	res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    sm,
		MetaResolver: stubResolver{},
	})
	if err != nil {
		return 0, err
	}
	if err := res.PrintTo(os.Stdout, nil); err != nil {
		return 0, err
	}
	n := len(res.Warnings)
	if res.Error != nil {
		res.PrintErrorTo(os.Stdout, nil)
		n++
	}
	if n > 0 {
		fmt.Println()
	}
	return n, nil
}

// stubResolver answers every base image with a minimal configuration of the
// requested platform instead of asking a registry.
type stubResolver struct{}

func (stubResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	var p ocispecs.Platform
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		p = *opt.ImageOpt.Platform
	}
	img := ocispecs.Image{
		Platform: p,
		Config:   ocispecs.ImageConfig{Env: []string{"PATH=" + system.DefaultPathEnvUnix}},
		RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString(ref)}},
	}
	dt, err := json.Marshal(img)
	return ref, "", dt, err
}
