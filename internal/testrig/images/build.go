package images

import (
	"context"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// The images the real-node tests run, by the names pods use.
const (
	PauseName    = "stsbind.local/pause:1"
	OperatorName = "stsbind.local/stsbind:e2e"
	// S3ClientName holds only the static Go S3 client: like distroless,
	// no shell and no cat, so Files mode cannot work in it (Endpoint, Env).
	S3ClientName = "stsbind.local/s3client:e2e"
	// BusyboxName adds busybox's sh and cat for Files mode's credential_process.
	BusyboxName = "stsbind.local/s3client-busybox:e2e"
)

// NonRoot is the user of every image here, as distroless's nonroot.
const NonRoot = 65532

// HostCABundle is the host file the operator image takes its CA certificates from.
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// BusyboxBinary is Debian busybox-static's static binary.
const BusyboxBinary = "/bin/busybox"

// GoBuild builds a static Go program (CGO_ENABLED=0, -trimpath, -s -w, as
// the Dockerfile does) of pkg, resolved in dir, and returns its bytes.
func GoBuild(ctx context.Context, dir, pkg, out string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

func exe(path string, data []byte) File { return File{Path: path, Mode: 0o755, Data: data} }

// nonRootFiles are distroless nonroot's account files, /tmp and home.
func nonRootFiles() []File {
	return []File{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Path: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: NonRoot, GID: NonRoot},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

var user = fmt.Sprintf("%d:%d", NonRoot, NonRoot)

// Pause is the sandbox image: the static pause program as /pause.
func Pause(pause []byte) Image {
	return Image{Name: PauseName, Config: Config{Entrypoint: []string{"/pause"}, User: user},
		Files: []File{exe("/pause", pause)}}
}

// Operator holds what the Dockerfile's final stage holds: /manager,
// /credentials-server, the CA certificates, user 65532, entrypoint /manager.
func Operator(manager, credentialsServer, caBundle []byte) Image {
	files := append(nonRootFiles(),
		exe("/manager", manager),
		exe("/credentials-server", credentialsServer),
		File{Path: "/etc/ssl/certs/ca-certificates.crt", Data: caBundle},
	)
	return Image{Name: OperatorName, Files: files, Config: Config{
		User: user, Entrypoint: []string{"/manager"}, WorkingDir: "/",
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
	}}
}

// S3Client is a scratch-like image with only /s3client.
func S3Client(s3client []byte) Image {
	return Image{Name: S3ClientName, Files: append(nonRootFiles(), exe("/s3client", s3client)),
		Config: Config{User: user, Entrypoint: []string{"/s3client"}, WorkingDir: "/"}}
}

// Busybox is S3Client plus busybox with sh and cat on PATH (/bin).
func Busybox(s3client, busybox []byte) Image {
	files := append(nonRootFiles(), exe("/s3client", s3client), exe("/bin/busybox", busybox))
	for _, applet := range []string{"sh", "cat", "ls", "env", "sleep"} {
		files = append(files, File{Path: "/bin/" + applet, Mode: fs.ModeSymlink, Link: "busybox"})
	}
	return Image{Name: BusyboxName, Files: files,
		Config: Config{User: user, Entrypoint: []string{"/s3client"}, WorkingDir: "/", Env: []string{"PATH=/bin"}}}
}

// Build compiles the programs from the repository at repoRoot and returns
// the four images, with the layout tars written into dir by name.
func Build(ctx context.Context, repoRoot, dir string) (map[string]string, error) {
	bin := func(pkg, name string) ([]byte, error) {
		return GoBuild(ctx, repoRoot, pkg, filepath.Join(dir, name))
	}
	pause, err := bin("./internal/testrig/images/pause", "pause")
	if err != nil {
		return nil, err
	}
	manager, err := bin(".", "manager")
	if err != nil {
		return nil, err
	}
	credsrv, err := bin("./cmd/credentials-server", "credentials-server")
	if err != nil {
		return nil, err
	}
	s3client, err := bin("./e2e/s3client", "s3client")
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(HostCABundle)
	if err != nil {
		return nil, fmt.Errorf("the operator image's CA certificates: %w", err)
	}
	busybox, err := staticBinary(BusyboxBinary)
	if err != nil {
		return nil, fmt.Errorf("busybox for the Files-mode image (Debian busybox-static): %w", err)
	}
	tars := map[string]string{}
	for _, img := range []Image{Pause(pause), Operator(manager, credsrv, ca), S3Client(s3client), Busybox(s3client, busybox)} {
		path := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.Name)+".tar")
		if err := writeFile(path, img); err != nil {
			return nil, err
		}
		tars[img.Name] = path
	}
	return tars, nil
}

// staticBinary reads an ELF executable that needs no dynamic loader: the
// images have no libc (Debian's plain busybox package is dynamic).
func staticBinary(path string) ([]byte, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return os.ReadFile(path)
}

func writeFile(path string, img Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteLayout(f, img, runtime.GOARCH); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", img.Name, err)
	}
	return f.Close()
}
