package assetfetch

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/cache"
)

// platformImage is a random image whose config says it is for p.
func platformImage(t *testing.T, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	config.OS, config.Architecture = p.OS, p.Architecture
	if img, err = mutate.ConfigFile(img, config); err != nil {
		t.Fatal(err)
	}
	return img
}

// serveIndex serves a registry holding, under repo:tag, an index of a
// linux/arm64 and a linux/amd64 image, as registry.k8s.io serves pause; it
// returns the registry's host and the amd64 image.
func serveIndex(t *testing.T, wrap func(http.Handler) http.Handler, repoTag string) (string, v1.Image) {
	t.Helper()
	server := httptest.NewServer(wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(server.Close)
	host := strings.TrimPrefix(server.URL, "http://")
	arm, amd := platformImage(t, v1.Platform{OS: "linux", Architecture: "arm64"}), platformImage(t, Platform)
	index := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &Platform}})
	tag, err := name.NewTag(host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, index); err != nil {
		t.Fatal(err)
	}
	return host, amd
}

func asIs(h http.Handler) http.Handler { return h }

// The copy is the amd64 image of the index, tagged as the reference, in
// an archive `ctr images import` and kubeadm's check find it by; the same
// image gives the same bytes, so a second deploy uploads nothing new.
func TestFetchCopiesThePlatformImage(t *testing.T) {
	host, amd := serveIndex(t, asIs, "pause:3.10.2")
	ref := host + "/pause:3.10.2"
	dir := t.TempDir()
	f, err := Fetch(ref, filepath.Join(dir, "a.tar"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.Digest()
	if f.ImageDigest != want.String() {
		t.Errorf("copied image %s, want the amd64 one %s", f.ImageDigest, want)
	}
	tag, _ := name.NewTag(ref)
	copied, err := tarball.ImageFromPath(f.Path, &tag)
	if err != nil {
		t.Fatalf("the archive holds no image tagged %s: %v", ref, err)
	}
	if got, _ := copied.Digest(); got != want {
		t.Errorf("the archive's image is %s, want %s", got, want)
	}
	again, err := Fetch(ref, filepath.Join(dir, "b.tar"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(f.Path)
	b, _ := os.ReadFile(again.Path)
	if !bytes.Equal(a, b) || f.RefDigest != again.RefDigest {
		t.Errorf("two copies of the same image differ (%d and %d bytes)", len(a), len(b))
	}
}

// A registry that serves a blob other than the one its manifest names
// gets nothing into the cache.
func TestFetchRefusesATamperedBlob(t *testing.T) {
	tamper := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 0 {
					body[len(body)-1] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(body)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	host, _ := serveIndex(t, tamper, "pause:3.10.2")
	path := filepath.Join(t.TempDir(), "pause.tar")
	_, err := Fetch(host+"/pause:3.10.2", path)
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Fetch of a tampered blob = %v, want a checksum mismatch", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed copy left %s", path)
	}
	if _, err := os.Stat(path + ".part"); !os.IsNotExist(err) {
		t.Errorf("a failed copy left %s.part", path)
	}
}

// An image with no amd64 variant, a reference without a tag and a tag the
// registry lacks are refused, naming the reference.
func TestFetchRefuses(t *testing.T) {
	server := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(server.Close)
	host := strings.TrimPrefix(server.URL, "http://")
	armOnly, _ := name.NewTag(host + "/arm:1")
	if err := remote.Write(armOnly, platformImage(t, v1.Platform{OS: "linux", Architecture: "arm64"})); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{host + "/arm:1", host + "/pause", host + "/pause:missing"} {
		_, err := Fetch(ref, filepath.Join(t.TempDir(), "x.tar"))
		if err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("Fetch(%s) = %v, want an error naming it", ref, err)
		}
	}
}

// FetchAll copies exactly the assets whose source is a registry, to where
// the deploy uploads them from.
func TestFetchAllFillsTheCache(t *testing.T) {
	host, _ := serveIndex(t, asIs, "pause:3.10.2")
	t.Setenv("KUBEHA_CACHE", t.TempDir())
	assets := bootstrap.PinnedAssets()
	assets.PauseImage.Source = bootstrap.ImageSource + host + "/pause:3.10.2"
	var out bytes.Buffer
	if err := FetchAll(assets, &out); err != nil {
		t.Fatal(err)
	}
	path, _ := cache.ImageArchive(host + "/pause:3.10.2")
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the pause image is not at %s: %v\n%s", path, err, out.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != 1 {
		t.Errorf("FetchAll copied %d images, want the one registry asset:\n%s", lines, out.String())
	}
}
