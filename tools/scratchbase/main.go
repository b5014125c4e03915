// Command scratchbase writes the base image of lambdarec's container image
// into ko's on-disk image cache, so that `ko build` needs no registry: the
// image is empty but for the CA bundle (TLS to S3, MSK, ClickHouse), runs as
// the unprivileged user 65532:65532 and has no shell. It prints the digest
// reference to pass to ko as KO_DEFAULTBASEIMAGE; ko finds that digest in
// $KOCACHE/img and never goes to the network for it.
//
//	cd tools && go run ./scratchbase -kocache DIR [-ca-bundle FILE] [-arch amd64]
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repository is the name the digest is given under; it is never pulled.
const Repository = "ko.invalid/lambdarec/base"

// User is the image's user: the conventional "nonroot" uid and gid.
const User = "65532:65532"

func main() {
	kocache := flag.String("kocache", os.Getenv("KOCACHE"), "ko's cache directory (the KOCACHE ko is run with)")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle copied to /etc/ssl/certs/ca-certificates.crt (empty: none)")
	arch := flag.String("arch", runtime.GOARCH, "image architecture")
	flag.Parse()
	if *kocache == "" {
		fmt.Fprintln(os.Stderr, "scratchbase: -kocache or KOCACHE is required")
		os.Exit(2)
	}
	ref, err := write(*kocache, *caBundle, *arch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scratchbase: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(ref)
}

func write(kocache, caBundle, arch string) (string, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS:           "linux",
		Architecture: arch,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User: User,
			Env:  []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		},
	})
	if err != nil {
		return "", fmt.Errorf("base config: %w", err)
	}
	if caBundle != "" {
		pem, err := os.ReadFile(caBundle)
		if err != nil {
			return "", fmt.Errorf("read CA bundle: %w", err)
		}
		layer, err := fileLayer("etc/ssl/certs/ca-certificates.crt", pem)
		if err != nil {
			return "", err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
			History: v1.History{CreatedBy: "scratchbase", Comment: "CA bundle"}}); err != nil {
			return "", fmt.Errorf("add CA layer: %w", err)
		}
	}
	dig, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("base digest: %w", err)
	}
	dir := filepath.Join(kocache, "img")
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return "", fmt.Errorf("create layout %s: %w", dir, err)
		}
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return "", fmt.Errorf("read layout %s: %w", dir, err)
	}
	found, err := partial.FindManifests(idx, match.Digests(dig))
	if err != nil {
		return "", fmt.Errorf("search layout %s: %w", dir, err)
	}
	if len(found) == 0 {
		if err := p.AppendImage(img); err != nil {
			return "", fmt.Errorf("write base image to %s: %w", dir, err)
		}
	}
	return Repository + "@" + dig.String(), nil
}

// fileLayer is a layer holding one root-owned, world-readable file (and its
// directories), with zero timestamps so that its digest depends only on data.
func fileLayer(name string, data []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{}
	for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}
