package images

import (
	"io/fs"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestImages: each image holds what its users need and nothing that would
// hide a missing piece (no shell outside the busybox image).
func TestImages(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		img        Image
		name       string
		entrypoint []string
		want       []string // executables
		absent     []string
	}{
		"pause": {img: Pause([]byte("p")), name: PauseName, entrypoint: []string{"/pause"}, want: []string{"/pause"}, absent: []string{"/bin/sh"}},
		"operator, as the Dockerfile builds it": {
			img: Operator([]byte("m"), []byte("c"), []byte("ca")), name: OperatorName, entrypoint: []string{"/manager"},
			want: []string{"/manager", "/credentials-server"}, absent: []string{"/bin/sh", "/bin/cat"},
		},
		"s3client alone": {img: S3Client([]byte("s")), name: S3ClientName, entrypoint: []string{"/s3client"}, want: []string{"/s3client"}, absent: []string{"/bin/sh", "/bin/cat"}},
		"s3client with busybox": {
			img: Busybox([]byte("s"), []byte("b")), name: BusyboxName, entrypoint: []string{"/s3client"},
			want: []string{"/s3client", "/bin/busybox"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tc.img.Name != tc.name || tc.img.Config.User != "65532:65532" {
				t.Errorf("name %q user %q", tc.img.Name, tc.img.Config.User)
			}
			if diff := cmp.Diff(tc.entrypoint, tc.img.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			files := map[string]File{}
			for _, f := range tc.img.Files {
				files[f.Path] = f
			}
			for _, p := range tc.want {
				if f, ok := files[p]; !ok || f.Mode != 0o755 || len(f.Data) == 0 {
					t.Errorf("%s missing or not executable: %+v", p, f)
				}
			}
			for _, p := range tc.absent {
				if _, ok := files[p]; ok {
					t.Errorf("%s present", p)
				}
			}
			if _, err := Layer(tc.img.Files); err != nil {
				t.Error(err)
			}
		})
	}
	op := map[string]File{}
	for _, f := range Operator(nil, nil, []byte("ca")).Files {
		op[f.Path] = f
	}
	if string(op["/etc/ssl/certs/ca-certificates.crt"].Data) != "ca" || op["/tmp"].Mode != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("operator image lacks the CA bundle or /tmp: %+v %+v", op["/etc/ssl/certs/ca-certificates.crt"], op["/tmp"])
	}
	bb := map[string]File{}
	for _, f := range Busybox(nil, nil).Files {
		bb[f.Path] = f
	}
	for _, applet := range []string{"/bin/sh", "/bin/cat"} {
		if bb[applet].Link != "busybox" {
			t.Errorf("%s is not a busybox link: %+v", applet, bb[applet])
		}
	}
}
