package k8s

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// envImage names an image tarball built by infra/image/build.sh (CI builds
// it once with `go tool task image`); without it the test builds its own.
const envImage = "LAMBDAREC_TEST_IMAGE"

// TestImage checks the image the deployment runs: the tarball's entrypoint
// is the lambdarec binary, its user is not root, it has no shell, the binary
// is static and, extracted from the layer and run, prints the version and
// commit the image is labelled with.
func TestImage(t *testing.T) {
	tarball := os.Getenv(envImage)
	wantVersion, wantCommit := "", ""
	if tarball == "" {
		tarball = filepath.Join(t.TempDir(), "lambdarec-image.tar")
		wantVersion, wantCommit = "v0.0.0-imagetest", "0123456789abcdef0123456789abcdef01234567"
		cmd := exec.Command("../image/build.sh", tarball)
		cmd.Env = append(os.Environ(), "VERSION="+wantVersion, "COMMIT="+wantCommit)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build image: %v\n%s", err, out)
		}
	}
	files := readTar(t, tarball)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v (%d images)", err, len(manifest))
	}
	var cfg struct {
		OS, Architecture string
		Config           struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Env        []string
			Labels     map[string]string
		}
	}
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("image config: %v", err)
	}
	if cfg.OS != "linux" {
		t.Errorf("os %q", cfg.OS)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/ko-app/lambdarec"}) || len(cfg.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/ko-app/lambdarec] and no cmd", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	version, commit := cfg.Config.Labels["org.opencontainers.image.version"], cfg.Config.Labels["org.opencontainers.image.revision"]
	if version == "" || commit == "" {
		t.Errorf("labels %v: no version or revision", cfg.Config.Labels)
	}
	if wantVersion != "" && (version != wantVersion || commit != wantCommit) {
		t.Errorf("labels say %s %s, built %s %s", version, commit, wantVersion, wantCommit)
	}

	// The filesystem: the layers in order.
	fs := map[string]*tar.Header{}
	var binary []byte
	for _, l := range manifest[0].Layers {
		zr, err := gzip.NewReader(bytes.NewReader(files[l]))
		if err != nil {
			t.Fatalf("layer %s: %v", l, err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l, err)
			}
			name := "/" + strings.TrimPrefix(path.Clean(h.Name), "/")
			fs[name] = h
			if name == cfg.Config.Entrypoint[0] {
				if binary, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for name, h := range fs {
		switch path.Base(name) {
		case "sh", "bash", "ash", "dash", "busybox", "zsh":
			t.Errorf("the image has a shell: %s", name)
		}
		if h.Typeflag == tar.TypeReg && h.Mode&0o6000 != 0 {
			t.Errorf("%s is setuid/setgid", name)
		}
	}
	if _, ok := fs["/etc/ssl/certs/ca-certificates.crt"]; !ok {
		t.Error("no CA bundle: TLS to S3, Kafka and ClickHouse would fail")
	}
	if h := fs[cfg.Config.Entrypoint[0]]; h == nil || h.Mode&0o111 == 0 || len(binary) == 0 {
		t.Fatalf("entrypoint %s is not an executable file in the layers", cfg.Config.Entrypoint[0])
	}

	// Static: no interpreter, no shared libraries.
	bin := filepath.Join(t.TempDir(), "lambdarec")
	if err := os.WriteFile(bin, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("entrypoint is not ELF: %v", err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := ef.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links shared libraries %v", libs)
	}
	ef.Close()

	cmd := exec.Command(bin, "version")
	cmd.Env = []string{} // as in the container: no LAMBDAREC_ variables
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lambdarec version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "lambdarec "+version+"\n") || !strings.Contains(string(out), "commit "+commit+"\n") {
		t.Errorf("lambdarec version printed %q, want version %s and commit %s", out, version, commit)
	}
	t.Logf("image %s: %d layers, user %s, entrypoint %v, binary %d bytes; version: %s", filepath.Base(tarball),
		len(manifest[0].Layers), cfg.Config.User, cfg.Config.Entrypoint, len(binary), strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
}

// readTar returns every regular file of the tarball by name.
func readTar(t *testing.T, name string) map[string][]byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}
