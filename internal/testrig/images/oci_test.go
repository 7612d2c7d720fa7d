package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type entry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Link     string
	Data     string
}

func readTar(t *testing.T, data []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Link: h.Linkname, Data: string(b)})
	}
}

func TestLayer(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		files   []File
		want    []entry
		wantErr string
	}{
		"parents added, sorted": {
			files: []File{
				{Path: "/bin/sh", Mode: fs.ModeSymlink, Link: "busybox"},
				{Path: "/bin/busybox", Mode: 0o755, Data: []byte("bb")},
				{Path: "/a", Data: []byte("x")},
			},
			want: []entry{
				{Name: "a", Type: tar.TypeReg, Mode: 0o644, Data: "x"},
				{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Data: "bb"},
				{Name: "bin/sh", Type: tar.TypeSymlink, Mode: 0o777, Link: "busybox"},
			},
		},
		"explicit directory keeps owner and sticky bit": {
			files: []File{
				{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
			},
			want: []entry{
				{Name: "home/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "home/nonroot/", Type: tar.TypeDir, Mode: 0o700, UID: 65532, GID: 65532},
				{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
			},
		},
		"path cleaned": {
			files: []File{{Path: "/etc//passwd", Data: []byte("p")}},
			want: []entry{
				{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
				{Name: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Data: "p"},
			},
		},
		"relative path":      {files: []File{{Path: "bin/sh"}}, wantErr: "must be absolute"},
		"root":               {files: []File{{Path: "/"}}, wantErr: "must be absolute"},
		"duplicate":          {files: []File{{Path: "/a"}, {Path: "/a/"}}, wantErr: "given twice"},
		"file as parent":     {files: []File{{Path: "/a"}, {Path: "/a/b"}}, wantErr: "file and a parent"},
		"directory and data": {files: []File{{Path: "/d", Mode: fs.ModeDir, Data: []byte("x")}}, wantErr: "directory with data"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := Layer(tc.files)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, readTar(t, data)); diff != "" {
				t.Errorf("layer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	t.Parallel()
	m := Descriptor{MediaType: MediaTypeManifest, Digest: "sha256:abc", Size: 3}
	tests := map[string]struct {
		name    string
		wantTag string
	}{
		"tagged":        {name: "stsbind.local/pause:1", wantTag: "1"},
		"registry port": {name: "localhost:5000/app", wantTag: "latest"},
		"port and tag":  {name: "localhost:5000/app:v2", wantTag: "v2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := Index(tc.name, m)
			if err != nil {
				t.Fatal(err)
			}
			var got index
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			want := index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{{
				MediaType: MediaTypeManifest, Digest: "sha256:abc", Size: 3,
				Annotations: map[string]string{AnnotationContainerdName: tc.name, AnnotationRefName: tc.wantTag},
			}}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("index (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Index("", m); err == nil {
		t.Error("an unnamed image was indexed")
	}
}

// TestWriteLayout follows the layout from index.json to the layer as an
// importer does and checks every digest and size on the way.
func TestWriteLayout(t *testing.T) {
	t.Parallel()
	img := Busybox([]byte("s3client"), []byte("busybox"))
	var buf bytes.Buffer
	if err := WriteLayout(&buf, img, "amd64"); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range readTar(t, buf.Bytes()) {
		files[e.Name] = []byte(e.Data)
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", files["oci-layout"])
	}
	open := func(d Descriptor, mediaType string) []byte {
		t.Helper()
		if d.MediaType != mediaType {
			t.Fatalf("media type %s, want %s", d.MediaType, mediaType)
		}
		data, ok := files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		sum := sha256.Sum256(data)
		if "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s: digest or size wrong", d.Digest)
		}
		return data
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	if got := idx.Manifests[0].Annotations[AnnotationContainerdName]; got != BusyboxName {
		t.Errorf("image name = %q", got)
	}
	var m manifest
	if err := json.Unmarshal(open(idx.Manifests[0], MediaTypeManifest), &m); err != nil {
		t.Fatal(err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(open(m.Config, MediaTypeConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest {
		t.Fatalf("diff IDs %v do not match layers %v", cfg.RootFS.DiffIDs, m.Layers)
	}
	layer := readTar(t, open(m.Layers[0], MediaTypeLayer))
	found := map[string]entry{}
	for _, e := range layer {
		found[e.Name] = e
	}
	if found["bin/sh"].Link != "busybox" || found["s3client"].Data != "s3client" || found["s3client"].Mode != 0o755 {
		t.Errorf("layer entries: %+v", layer)
	}
	if cfg.Config.User != "65532:65532" || cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.Config.Entrypoint[0] != "/s3client" {
		t.Errorf("config = %+v", cfg)
	}

	// Same inputs, same bytes: digests are stable across runs.
	var again bytes.Buffer
	if err := WriteLayout(&again, img, "amd64"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two layouts of the same image differ")
	}
}
