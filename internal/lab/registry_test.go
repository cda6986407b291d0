package lab

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/pki"
	"github.com/kubeha/kubeha/internal/tools"
)

// staticBinary builds a program that does nothing, statically linked, as
// the images' binaries are.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return out
}

// registryImages writes one image per reference into dir, each holding
// binary at its own path, so that no two share a layer.
func registryImages(t *testing.T, dir, binary string, refs ...string) map[string]string {
	t.Helper()
	images := map[string]string{}
	for i, ref := range refs {
		out := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if err := writeImage(out, binary, imageSpec{ref: ref, target: fmt.Sprintf("/usr/local/bin/probe-%d", i)}); err != nil {
			t.Fatal(err)
		}
		images[ref] = out
	}
	return images
}

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// registryAnswer is one response of the registry.
type registryAnswer struct {
	status int
	header http.Header
	body   []byte
}

// errorCode is the code of an OCI error body.
func (a registryAnswer) errorCode() string {
	var e struct {
		Errors []struct{ Code string }
	}
	if json.Unmarshal(a.body, &e) != nil || len(e.Errors) != 1 {
		return fmt.Sprintf("not one OCI error: %q", a.body[:min(len(a.body), 200)])
	}
	return e.Errors[0].Code
}

// TestRegistry serves images from the tarballs writeImage writes, under
// fully qualified and Docker Hub short references, as containerd pulls
// them: a manifest by tag and by its digest, its config and layer by
// theirs, byte for byte those of the tarball; HEAD without a body; and
// the OCI errors for what it does not hold or does not do.
func TestRegistry(t *testing.T) {
	binary := staticBinary(t)
	const flannel, coredns, busybox = "ghcr.io/flannel-io/flannel:v0.28.9", "coredns/coredns:1.13.1", "busybox:1"
	images := registryImages(t, t.TempDir(), binary, flannel, coredns, busybox)
	r, err := NewRegistry(images)
	if err != nil {
		t.Fatal(err)
	}
	if hosts, want := r.Hosts(), []string{"docker.io", "ghcr.io", "registry-1.docker.io"}; !reflect.DeepEqual(hosts, want) {
		t.Errorf("hosts %q, want %q", hosts, want)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	do := func(method, host, path string) registryAnswer {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return registryAnswer{resp.StatusCode, resp.Header, body}
	}
	// head calls the handler directly: a client drops a HEAD's body unread.
	head := func(host, path string) registryAnswer {
		t.Helper()
		req := httptest.NewRequest(http.MethodHead, path, nil)
		req.Host = host
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return registryAnswer{rec.Code, rec.Result().Header, rec.Body.Bytes()}
	}

	if a := do("GET", "ghcr.io", "/v2/"); a.status != 200 || string(a.body) != "{}" || a.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/: %d %q %v", a.status, a.body, a.header)
	}

	files := readTar(t, images[flannel])
	var saved []imageManifest
	if err := json.Unmarshal(files["manifest.json"], &saved); err != nil {
		t.Fatal(err)
	}
	config, layer := files[saved[0].Config], files[saved[0].Layers[0]]

	a := do("GET", "ghcr.io", "/v2/flannel-io/flannel/manifests/v0.28.9")
	if a.status != 200 || a.header.Get("Content-Type") != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("manifest by tag: %d %s: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	manifest, digest := a.body, a.header.Get("Docker-Content-Digest")
	if digest != sha256Digest(manifest) || a.header.Get("Content-Length") != strconv.Itoa(len(manifest)) {
		t.Errorf("manifest: digest %s, length %s; its body has %s, %d bytes", digest, a.header.Get("Content-Length"), sha256Digest(manifest), len(manifest))
	}
	var m ociManifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	wantManifest := ociManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: ociDescriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sha256Digest(config), Size: int64(len(config))},
		Layers: []ociDescriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: sha256Digest(layer), Size: int64(len(layer))}}}
	if !reflect.DeepEqual(m, wantManifest) {
		t.Errorf("manifest %+v, want %+v", m, wantManifest)
	}
	if a := do("GET", "ghcr.io", "/v2/flannel-io/flannel/manifests/"+digest); a.status != 200 || !bytes.Equal(a.body, manifest) || a.header.Get("Docker-Content-Digest") != digest {
		t.Errorf("manifest by digest %s: %d %s", digest, a.status, a.body)
	}

	for _, want := range []struct {
		what string
		data []byte
	}{{"config", config}, {"layer", layer}} {
		d := sha256Digest(want.data)
		a := do("GET", "ghcr.io", "/v2/flannel-io/flannel/blobs/"+d)
		if a.status != 200 || !bytes.Equal(a.body, want.data) || a.header.Get("Docker-Content-Digest") != d ||
			a.header.Get("Content-Length") != strconv.Itoa(len(want.data)) || sha256Digest(a.body) != d {
			t.Errorf("%s %s: %d, %d bytes (want %d), digest %s, length %s", want.what, d, a.status, len(a.body), len(want.data),
				a.header.Get("Docker-Content-Digest"), a.header.Get("Content-Length"))
		}
	}
	// containerd resumes a download with a range.
	req, _ := http.NewRequest("GET", srv.URL+"/v2/flannel-io/flannel/blobs/"+sha256Digest(layer), nil)
	req.Host, req.Header["Range"] = "ghcr.io", []string{"bytes=512-1023"}
	if resp, err := srv.Client().Do(req); err != nil {
		t.Error(err)
	} else {
		part, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, layer[512:1024]) {
			t.Errorf("layer range: %d, %d bytes", resp.StatusCode, len(part))
		}
	}

	for _, h := range []struct{ path, length string }{
		{"/v2/flannel-io/flannel/manifests/v0.28.9", strconv.Itoa(len(manifest))},
		{"/v2/flannel-io/flannel/blobs/" + sha256Digest(layer), strconv.Itoa(len(layer))},
	} {
		a := head("ghcr.io", h.path)
		if a.status != 200 || a.header.Get("Content-Length") != h.length || len(a.body) != 0 || a.header.Get("Docker-Content-Digest") == "" {
			t.Errorf("HEAD %s: %d, length %s (want %s), digest %q, %d bytes of body", h.path, a.status,
				a.header.Get("Content-Length"), h.length, a.header.Get("Docker-Content-Digest"), len(a.body))
		}
	}

	// Docker Hub's short references, where containerd asks for them.
	for _, hub := range []struct{ host, path, image string }{
		{"registry-1.docker.io", "/v2/coredns/coredns/manifests/1.13.1", coredns},
		{"docker.io:443", "/v2/coredns/coredns/manifests/1.13.1", coredns},
		{"registry-1.docker.io", "/v2/library/busybox/manifests/1", busybox},
	} {
		a := do("GET", hub.host, hub.path)
		var m ociManifest
		if a.status != 200 || json.Unmarshal(a.body, &m) != nil || len(m.Layers) != 1 {
			t.Errorf("%s%s: %d %s", hub.host, hub.path, a.status, a.body)
			continue
		}
		saved := readTar(t, images[hub.image])
		if !bytes.Equal(saved[strings.TrimPrefix(m.Config.Digest, "sha256:")+".json"], mustBlob(t, do, hub.host, hub.path, m.Config.Digest)) {
			t.Errorf("%s: its config is not %s's", hub.path, hub.image)
		}
	}

	for _, e := range []struct {
		method, host, path string
		status             int
		code               string
	}{
		{"GET", "ghcr.io", "/v2/flannel-io/flannel/manifests/v0.0.0", 404, "MANIFEST_UNKNOWN"},
		{"GET", "ghcr.io", "/v2/flannel-io/flannel/manifests/" + sha256Digest([]byte("no")), 404, "MANIFEST_UNKNOWN"},
		{"GET", "ghcr.io", "/v2/flannel-io/flannel/blobs/" + sha256Digest([]byte("no")), 404, "BLOB_UNKNOWN"},
		// A blob is served from the repository that holds it only.
		{"GET", "registry-1.docker.io", "/v2/coredns/coredns/blobs/" + sha256Digest(layer), 404, "BLOB_UNKNOWN"},
		{"GET", "ghcr.io", "/v2/coredns/coredns/manifests/1.13.1", 404, "NAME_UNKNOWN"},
		{"GET", "quay.io", "/v2/flannel-io/flannel/manifests/v0.28.9", 404, "NAME_UNKNOWN"},
		{"POST", "ghcr.io", "/v2/flannel-io/flannel/blobs/uploads/", 405, "UNSUPPORTED"},
		{"PUT", "ghcr.io", "/v2/flannel-io/flannel/manifests/v0.28.9", 405, "UNSUPPORTED"},
		{"DELETE", "ghcr.io", "/v2/flannel-io/flannel/blobs/" + sha256Digest(layer), 405, "UNSUPPORTED"},
	} {
		if a := do(e.method, e.host, e.path); a.status != e.status || a.errorCode() != e.code || a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s%s: %d %s, want %d %s", e.method, e.host, e.path, a.status, a.errorCode(), e.status, e.code)
		}
	}
	if a := head("ghcr.io", "/v2/flannel-io/flannel/manifests/v0.0.0"); a.status != 404 || len(a.body) != 0 {
		t.Errorf("HEAD of an unknown tag: %d, %d bytes of body", a.status, len(a.body))
	}
}

// mustBlob fetches a blob of the repository whose manifest is at path.
func mustBlob(t *testing.T, do func(method, host, path string) registryAnswer, host, manifestPath, digest string) []byte {
	t.Helper()
	path := manifestPath[:strings.LastIndex(manifestPath, "/manifests/")] + "/blobs/" + digest
	a := do("GET", host, path)
	if a.status != 200 {
		t.Errorf("%s%s: %d %s", host, path, a.status, a.body)
	}
	return a.body
}

// TestRegistryReferences normalises references as Docker does.
func TestRegistryReferences(t *testing.T) {
	for ref, want := range map[string]string{
		"ghcr.io/flannel-io/flannel:v0.28.9":         "ghcr.io flannel-io/flannel v0.28.9",
		"coredns/coredns:1.13.1":                     "docker.io coredns/coredns 1.13.1",
		"busybox:1":                                  "docker.io library/busybox 1",
		"busybox":                                    "docker.io library/busybox latest",
		"registry-1.docker.io/library/busybox:1":     "docker.io library/busybox 1",
		"registry.k8s.io/kube-apiserver:v1.36.3":     "registry.k8s.io kube-apiserver v1.36.3",
		"localhost:5000/kubeha/probe:v1":             "localhost kubeha/probe v1",
		"registry.k8s.io/sig-storage/csi-attacher:x": "registry.k8s.io sig-storage/csi-attacher x",
	} {
		host, name, tag, err := parseReference(ref)
		if got := strings.Join([]string{host, name, tag}, " "); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, ref := range []string{"Coredns/coredns:1", "ghcr.io/flannel-io/flannel@sha256:" + strings.Repeat("0", 64), "ghcr.io//x:1", "x:"} {
		if _, _, _, err := parseReference(ref); err == nil {
			t.Errorf("%s was taken", ref)
		}
	}
}

// TestRegistryRefusesALayerNotItsDiffID fails on a tarball whose layer is
// not the one its config names, and says which tarball.
func TestRegistryRefusesALayerNotItsDiffID(t *testing.T) {
	dir := t.TempDir()
	images := registryImages(t, dir, staticBinary(t), "ghcr.io/kubeha/probe:v1")
	good := images["ghcr.io/kubeha/probe:v1"]
	if _, err := NewRegistry(images); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, good)
	var saved []imageManifest
	if err := json.Unmarshal(files["manifest.json"], &saved); err != nil {
		t.Fatal(err)
	}
	layer := files[saved[0].Layers[0]]
	layer[len(layer)-1024] ^= 1

	bad := filepath.Join(dir, "bad.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		if err := tw.WriteHeader(tarHeader(name, tar.TypeReg, 0o644, len(data))); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewRegistry(map[string]string{"ghcr.io/kubeha/probe:v1": bad})
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("a layer that is not its diff_id: %v", err)
	}
}

// TestContainerdPullsFromTheRegistry pulls an image from the registry,
// over TLS with a certificate of kubeha's pki, with the ctr and the
// containerd hack/tools.sh builds, and finds it among containerd's images
// under the manifest the registry serves. Needs root.
func TestContainerdPullsFromTheRegistry(t *testing.T) {
	if os.Geteuid() != 0 {
		tools.Unavailable(t, "running containerd needs root")
	}
	if err := tools.Missing("containerd", "ctr"); err != nil {
		tools.Unavailable(t, err.Error())
	}
	binDir, err := tools.Dir()
	if err != nil {
		t.Fatal(err)
	}
	const ref = "localhost/kubeha/probe:v1"
	r, err := NewRegistry(registryImages(t, t.TempDir(), staticBinary(t), ref))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.Issue(pki.Spec{CommonName: "kubeha registry test CA", IsCA: true, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Sign(pki.Spec{CommonName: "localhost", DNSNames: []string{"localhost"}, IPAddresses: []string{"127.0.0.1"},
		Usages: []pki.Usage{pki.ServerAuth}, ValidityHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	pull := "localhost:" + port + "/kubeha/probe:v1"

	dir, ctr := startContainerd(t, binDir, "khreg", nil)
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	// containerd itself pulls, as the CRI does, with a certs.d as a node's
	// (ctr takes --tlscacert only when it pulls itself). An explicit host:
	// containerd skips verifying localhost's certificate by default.
	hostsDir := func(ca string) string {
		hosts := t.TempDir()
		config := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "https://localhost:"+port, "https://localhost:"+port)
		if ca != "" {
			config += fmt.Sprintf("  ca = %q\n", ca)
		}
		if err := os.MkdirAll(filepath.Join(hosts, "localhost:"+port), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hosts, "localhost:"+port, "hosts.toml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		return hosts
	}
	// Without the CA, the pull fails: the certificate is checked.
	if _, err := ctr("images", "pull", "--hosts-dir", hostsDir(""), "--platform", "linux/"+runtime.GOARCH, pull); err == nil ||
		!strings.Contains(err.Error(), "x509") {
		t.Errorf("a pull without the CA: %v", err)
	}
	start := time.Now()
	if _, err := ctr("images", "pull", "--hosts-dir", hostsDir(caFile), "--platform", "linux/"+runtime.GOARCH, pull); err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED: pulled %s in %.1fs", pull, time.Since(start).Seconds())

	// The manifest the registry serves for the tag.
	req := httptest.NewRequest(http.MethodHead, "/v2/kubeha/probe/manifests/v1", nil)
	req.Host = "localhost:" + port
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	digest := rec.Header().Get("Docker-Content-Digest")
	if rec.Code != 200 || digest == "" {
		t.Fatalf("the registry has no manifest for %s: %d", pull, rec.Code)
	}
	list, err := ctr("images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == pull {
			found = true
			if f[1] != "application/vnd.oci.image.manifest.v1+json" || f[2] != digest {
				t.Errorf("%s is %s %s, want the registry's manifest %s", pull, f[1], f[2], digest)
			}
		}
	}
	if !found {
		t.Errorf("%s is not among containerd's images:\n%s", pull, list)
	}
	// Pulled means every blob fetched and the layer unpacked.
	check, err := ctr("images", "check")
	if err != nil {
		t.Fatal(err)
	}
	checked := false
	for _, line := range strings.Split(check, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == pull {
			checked = strings.Contains(line, " complete ") && f[len(f)-1] == "true"
		}
	}
	if !checked {
		t.Errorf("%s is not complete and unpacked:\n%s", pull, check)
	}
}
