package lab

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// The registry serves the lab's images to the nodes' containerd by the
// references the add-ons name, read-only, as OCI image manifests over the
// layers of their docker-save tarballs.
const (
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociConfigType   = "application/vnd.oci.image.config.v1+json"
	// The tarballs' layers are uncompressed, and served as they are.
	ociLayerType = "application/vnd.oci.image.layer.v1.tar"

	dockerHub = "docker.io"
	// dockerHubAPI is the host containerd asks for docker.io's images.
	dockerHubAPI = "registry-1.docker.io"
)

// Registry is a read-only registry (the pull side of the OCI Distribution
// API) serving images loaded from docker-save tarballs.
type Registry struct {
	repos map[string]*repository // by host/name
	hosts []string
}

// repository is one image name: its tags, manifests and blobs by digest.
type repository struct {
	tags      map[string]string
	manifests map[string][]byte
	blobs     map[string]blob
}

// blob is a config or a layer. A layer stays in its tarball, which stays
// open: a tarball written again later (BuildImages renames a new one over
// it) does not change what is served.
type blob struct {
	content io.ReaderAt
	size    int64
}

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

// NewRegistry loads each image (reference -> docker-save tarball path) and
// serves them.
func NewRegistry(images map[string]string) (_ *Registry, err error) {
	r := &Registry{repos: map[string]*repository{}}
	tarballs := map[string]*tarball{}
	defer func() {
		if err != nil {
			for _, tb := range tarballs {
				tb.file.Close()
			}
		}
	}()
	hosts := map[string]bool{}
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		path := images[ref]
		host, name, tag, err := parseReference(ref)
		if err != nil {
			return nil, err
		}
		tb, ok := tarballs[path]
		if !ok {
			if tb, err = readTarball(path); err != nil {
				return nil, err
			}
			tarballs[path] = tb
		}
		repo := r.repos[host+"/"+name]
		if repo == nil {
			repo = &repository{tags: map[string]string{}, manifests: map[string][]byte{}, blobs: map[string]blob{}}
			r.repos[host+"/"+name] = repo
		}
		if err := tb.addTo(repo, ref, tag); err != nil {
			return nil, fmt.Errorf("lab: registry: %s: %w", path, err)
		}
		hosts[host] = true
		if host == dockerHub {
			hosts[dockerHubAPI] = true
		}
	}
	for host := range hosts {
		r.hosts = append(r.hosts, host)
	}
	sort.Strings(r.hosts)
	return r, nil
}

// Hosts are the DNS names clients will ask for: each reference's registry
// host, with docker.io served as registry-1.docker.io too (containerd's
// default host for docker.io).
func (r *Registry) Hosts() []string { return append([]string(nil), r.hosts...) }

// parseReference normalises a reference as Docker does (coredns/coredns:1
// is docker.io/coredns/coredns:1, busybox:1 docker.io/library/busybox:1)
// into its registry host, without a port, its name and its tag.
func parseReference(ref string) (host, name, tag string, err error) {
	if strings.Contains(ref, "@") {
		// The manifest served is not the one such a digest names.
		return "", "", "", fmt.Errorf("lab: registry: reference %q has a digest; give a tag", ref)
	}
	name, tag = ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	host = dockerHub
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, name = first, rest
	}
	host = registryHost(host)
	if host == dockerHub && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	if name == "" || tag == "" || name != strings.ToLower(name) || strings.Contains("/"+name+"/", "//") {
		return "", "", "", fmt.Errorf("lab: registry: %q is not an image reference like ghcr.io/flannel-io/flannel:v0.28.9", ref)
	}
	return host, name, tag, nil
}

// registryHost is the registry a host (with or without a port) names.
func registryHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	if host == dockerHubAPI || host == "index.docker.io" {
		return dockerHub
	}
	return host
}

// tarball is a docker-save tarball read once: where each regular file is
// in it, and its digest.
type tarball struct {
	path  string
	file  *os.File
	files map[string]tarFile
}

type tarFile struct {
	offset, size int64
	digest       string
}

// countingReader says how far tar has read, so that each file's data is
// found again by its offset.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func readTarball(path string) (*tarball, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lab: registry: %w", err)
	}
	tb := &tarball{path: path, file: f, files: map[string]tarFile{}}
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tb, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lab: registry: %s: %w", path, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		offset := cr.n
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			f.Close()
			return nil, fmt.Errorf("lab: registry: %s: %s: %w", path, hdr.Name, err)
		}
		tb.files[hdr.Name] = tarFile{offset: offset, size: hdr.Size, digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
	}
}

func (tb *tarball) read(name string) ([]byte, error) {
	tf, ok := tb.files[name]
	if !ok {
		return nil, fmt.Errorf("no %s in the tarball", name)
	}
	data := make([]byte, tf.size)
	if _, err := tb.file.ReadAt(data, tf.offset); err != nil {
		return nil, err
	}
	return data, nil
}

// addTo puts the tarball's image for ref into repo under tag: the entry of
// manifest.json tagged ref, or its only entry.
func (tb *tarball) addTo(repo *repository, ref, tag string) error {
	data, err := tb.read("manifest.json")
	if err != nil {
		return err
	}
	var entries []imageManifest
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	var entry *imageManifest
	for i := range entries {
		for _, t := range entries[i].RepoTags {
			if sameReference(t, ref) {
				entry = &entries[i]
			}
		}
	}
	if entry == nil && len(entries) == 1 {
		entry = &entries[0]
	}
	if entry == nil {
		return fmt.Errorf("no image tagged %s among its %d", ref, len(entries))
	}
	config, err := tb.read(entry.Config)
	if err != nil {
		return err
	}
	var cfg imageConfig
	if err := json.Unmarshal(config, &cfg); err != nil {
		return fmt.Errorf("%s: %w", entry.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(entry.Layers) {
		return fmt.Errorf("%d layers, but its config has %d diff_ids", len(entry.Layers), len(cfg.RootFS.DiffIDs))
	}
	m := ociManifest{SchemaVersion: 2, MediaType: ociManifestType,
		Config: ociDescriptor{MediaType: ociConfigType, Digest: digestOf(config), Size: int64(len(config))}}
	repo.blobs[m.Config.Digest] = blob{content: bytes.NewReader(config), size: m.Config.Size}
	for i, layer := range entry.Layers {
		tf, ok := tb.files[layer]
		if !ok {
			return fmt.Errorf("no layer %s in the tarball", layer)
		}
		// Uncompressed, a layer's digest is its diff_id.
		if tf.digest != cfg.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %s has digest %s, but its config's diff_id is %s", layer, tf.digest, cfg.RootFS.DiffIDs[i])
		}
		m.Layers = append(m.Layers, ociDescriptor{MediaType: ociLayerType, Digest: tf.digest, Size: tf.size})
		repo.blobs[tf.digest] = blob{content: io.NewSectionReader(tb.file, tf.offset, tf.size), size: tf.size}
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	digest := digestOf(manifest)
	repo.manifests[digest] = manifest
	repo.tags[tag] = digest
	return nil
}

// sameReference says whether two references name the same image.
func sameReference(a, b string) bool {
	ha, na, ta, errA := parseReference(a)
	hb, nb, tb, errB := parseReference(b)
	return errA == nil && errB == nil && ha == hb && na == nb && ta == tb
}

func digestOf(data []byte) string { return "sha256:" + imageDigestHex(data) }

// ServeHTTP answers the pull side of the OCI Distribution API for the
// registry the request's Host names.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		registryError(w, req, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only")
		return
	}
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if req.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/v2/")
	if !ok {
		http.NotFound(w, req)
		return
	}
	// The name may have slashes: the last /manifests/ or /blobs/ ends it.
	kind, name, id := "", "", ""
	for _, k := range []string{"manifests", "blobs"} {
		if i := strings.LastIndex(rest, "/"+k+"/"); i > 0 && i > len(name) {
			kind, name, id = k, rest[:i], rest[i+len(k)+2:]
		}
	}
	if kind == "" || id == "" || strings.Contains(id, "/") {
		registryError(w, req, http.StatusNotFound, "NAME_UNKNOWN", "no such endpoint: "+req.URL.Path)
		return
	}
	host := registryHost(req.Host)
	repo, ok := r.repos[host+"/"+name]
	if !ok {
		registryError(w, req, http.StatusNotFound, "NAME_UNKNOWN", "no repository "+name+" on "+host)
		return
	}
	if kind == "manifests" {
		digest := id
		if !strings.Contains(id, ":") {
			digest = repo.tags[id]
		}
		manifest, ok := repo.manifests[digest]
		if !ok {
			registryError(w, req, http.StatusNotFound, "MANIFEST_UNKNOWN", "no manifest "+id+" in "+name)
			return
		}
		serveContent(w, req, ociManifestType, digest, bytes.NewReader(manifest), int64(len(manifest)))
		return
	}
	b, ok := repo.blobs[id]
	if !ok {
		registryError(w, req, http.StatusNotFound, "BLOB_UNKNOWN", "no blob "+id+" in "+name)
		return
	}
	serveContent(w, req, "application/octet-stream", id, b.content, b.size)
}

// serveContent answers GET and HEAD, and Range requests, which containerd
// sends to resume a download.
func serveContent(w http.ResponseWriter, req *http.Request, contentType, digest string, content io.ReaderAt, size int64) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Etag", `"`+digest+`"`)
	http.ServeContent(w, req, "", time.Time{}, io.NewSectionReader(content, 0, size))
}

// registryError writes the OCI error body.
func registryError(w http.ResponseWriter, req *http.Request, status int, code, message string) {
	body, _ := json.Marshal(map[string][]map[string]string{"errors": {{"code": code, "message": message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
