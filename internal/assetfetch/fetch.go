// Package assetfetch copies the images nodes import that no release
// archive holds (bootstrap.ImageSource assets) from their registry into
// the local cache, where the deploy uploads them to the cluster's asset
// bucket: `kubeha assets fetch`, as `kops get assets --copy` copies a
// cluster's images to a mirror. Nodes then need no registry at boot.
package assetfetch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/cache"
)

// Platform is the nodes' platform.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Fetched is one image copied: the digest the registry gave for the
// reference (an index's, for a multi-platform image) and the copied
// image's own.
type Fetched struct {
	Ref, RefDigest, ImageDigest, Path string
}

// Fetch copies ref's image for Platform to path, as a docker-save archive
// tagged ref, which `ctr images import` reads. go-containerregistry checks
// every manifest and blob against its digest as it reads it.
func Fetch(ref, path string, options ...remote.Option) (Fetched, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return Fetched{}, fmt.Errorf("assetfetch: %q is not a registry/repository:tag reference: %w", ref, err)
	}
	desc, err := remote.Get(tag, append(options, remote.WithPlatform(Platform))...)
	if err != nil {
		return Fetched{}, fmt.Errorf("assetfetch: %s: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Fetched{}, fmt.Errorf("assetfetch: %s: %w", ref, err)
	}
	config, err := img.ConfigFile()
	if err != nil {
		return Fetched{}, fmt.Errorf("assetfetch: %s: %w", ref, err)
	}
	if config.OS != Platform.OS || config.Architecture != Platform.Architecture {
		return Fetched{}, fmt.Errorf("assetfetch: %s has no %s/%s image (got %s/%s)", ref, Platform.OS, Platform.Architecture, config.OS, config.Architecture)
	}
	digest, err := img.Digest()
	if err != nil {
		return Fetched{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Fetched{}, err
	}
	// Written aside and renamed: an interrupted copy is never uploaded.
	part := path + ".part"
	defer os.Remove(part)
	if err := tarball.WriteToFile(part, tag, img); err != nil {
		return Fetched{}, fmt.Errorf("assetfetch: %s: %w", ref, err)
	}
	if err := os.Rename(part, path); err != nil {
		return Fetched{}, err
	}
	return Fetched{Ref: ref, RefDigest: desc.Digest.String(), ImageDigest: digest.String(), Path: path}, nil
}

// FetchAll copies every image asset of assets into the cache
// (cache.ImageArchive), and says what it copied.
func FetchAll(assets bootstrap.Assets, log io.Writer, options ...remote.Option) error {
	for _, asset := range assets.List() {
		ref, ok := asset.ImageRef()
		if !ok {
			continue
		}
		path, err := cache.ImageArchive(ref)
		if err != nil {
			return err
		}
		f, err := Fetch(ref, path, options...)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "%s (%s; %s/%s image %s) -> %s\n", f.Ref, f.RefDigest, Platform.OS, Platform.Architecture, f.ImageDigest, f.Path)
	}
	return nil
}
