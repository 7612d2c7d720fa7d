// Package images builds container images without Docker or a registry: one
// uncompressed layer, written as an OCI image layout tar whose index names the
// image (annotation io.containerd.image.name), so that
// `ctr -n k8s.io images import` makes it usable by pods with
// imagePullPolicy: Never.
package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image spec.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	// AnnotationContainerdName is what `ctr images import` names the image by.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationRefName is the OCI tag annotation.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// File is one entry of an image's layer.
type File struct {
	// Path is absolute inside the image: "/bin/sh".
	Path string
	// Mode holds the permission bits, plus fs.ModeDir for a directory or
	// fs.ModeSymlink for a link; zero means a 0644 file (0755 directory).
	Mode fs.FileMode
	UID  int
	GID  int
	// Data is a regular file's content.
	Data []byte
	// Link is a symlink's target.
	Link string
}

// Config is the part of the OCI image configuration the rig sets.
type Config struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

// Image is a single-layer image.
type Image struct {
	// Name is the full reference pods use: "stsbind.local/pause:1".
	Name   string
	Config Config
	Files  []File
}

// Descriptor points at a blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform says which machines a manifest is for.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// epoch is every entry's modification time: the same inputs give the same digests.
var epoch = time.Unix(0, 0).UTC()

// Layer returns the layer tar: the files sorted by path, each preceded by
// its missing parent directories (root-owned, 0755).
func Layer(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean(f.Path)
		if !path.IsAbs(p) || p == "/" {
			return nil, fmt.Errorf("image path %q must be absolute and not /", f.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("image path %s given twice", p)
		}
		f.Path = p
		entries[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		if f.Mode.IsDir() && f.Data != nil {
			return nil, fmt.Errorf("%s is a directory with data", p)
		}
		if !f.Mode.IsDir() && f.Mode&fs.ModeSymlink == 0 && isParent(p, paths) {
			return nil, fmt.Errorf("%s is a file and a parent directory", p)
		}
		if err := tw.WriteHeader(header(f)); err != nil {
			return nil, err
		}
		if len(f.Data) > 0 {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func isParent(p string, sorted []string) bool {
	i := sort.SearchStrings(sorted, p+"/")
	return i < len(sorted) && strings.HasPrefix(sorted[i], p+"/")
}

func header(f File) *tar.Header {
	h := &tar.Header{
		Name:    strings.TrimPrefix(f.Path, "/"),
		Mode:    int64(f.Mode.Perm()),
		Uid:     f.UID,
		Gid:     f.GID,
		ModTime: epoch,
		Format:  tar.FormatPAX,
	}
	switch {
	case f.Mode.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		if h.Mode == 0 {
			h.Mode = 0o755
		}
	case f.Mode&fs.ModeSymlink != 0:
		h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
	default:
		h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
	}
	// Sticky and setuid bits are not part of Perm.
	if f.Mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	return h
}

// blob is one content-addressed file of the layout.
type blob struct {
	desc Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{desc: Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}, data: data}
}

// imageConfig is the OCI image configuration document.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       Config `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Index is the layout's index.json: one manifest, named for containerd and
// tagged for OCI tools.
func Index(name string, m Descriptor) ([]byte, error) {
	if name == "" {
		return nil, fmt.Errorf("an image needs a name")
	}
	tag := name[strings.LastIndex(name, "/")+1:]
	if i := strings.LastIndex(tag, ":"); i >= 0 {
		tag = tag[i+1:]
	} else {
		tag = "latest"
	}
	m.Annotations = map[string]string{AnnotationContainerdName: name, AnnotationRefName: tag}
	return json.Marshal(index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{m}})
}

// blobs returns the layer, config and manifest blobs of img, in that order.
func blobs(img Image, arch string) ([]blob, error) {
	layerData, err := Layer(img.Files)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	layer := newBlob(MediaTypeLayer, layerData)
	cfg := imageConfig{Architecture: arch, OS: "linux", Config: img.Config}
	cfg.RootFS.Type = "layers"
	// Uncompressed: the diff ID is the layer's own digest.
	cfg.RootFS.DiffIDs = []string{layer.desc.Digest}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	config := newBlob(MediaTypeConfig, cfgData)
	mData, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: config.desc, Layers: []Descriptor{layer.desc}})
	if err != nil {
		return nil, err
	}
	return []blob{layer, config, newBlob(MediaTypeManifest, mData)}, nil
}

// WriteLayout writes img as an OCI image layout tar for arch ("amd64").
func WriteLayout(w io.Writer, img Image, arch string) error {
	bs, err := blobs(img, arch)
	if err != nil {
		return err
	}
	m := bs[2].desc
	m.Platform = &Platform{Architecture: arch, OS: "linux"}
	idx, err := Index(img.Name, m)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, b := range bs {
		if err := put("blobs/sha256/"+strings.TrimPrefix(b.desc.Digest, "sha256:"), b.data); err != nil {
			return err
		}
	}
	if err := put("index.json", idx); err != nil {
		return err
	}
	return tw.Close()
}
