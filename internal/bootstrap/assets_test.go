package bootstrap

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fetch_asset retries a failed download, and never leaves a file whose
// digest is not the pinned one.
func TestFetchAssetRetriesAndRefuses(t *testing.T) {
	dir := t.TempDir()
	script, err := scripts.ReadFile("scripts/assets.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "assets.sh"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	// A stand-in for the AWS CLI that crashes on its first call, then
	// copies "good" into the destination.
	aws := "#!/bin/sh\nif [ ! -e \"$0.ran\" ]; then touch \"$0.ran\"; kill -SEGV $$; fi\necho good > \"$5\"\n"
	if err := os.WriteFile(filepath.Join(dir, "aws"), []byte(aws), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("good\n"))
	good := hex.EncodeToString(sum[:])
	run := func(digest string) (string, error) {
		cmd := exec.Command("bash", "-c", `sleep() { :; }; . ./assets.sh && fetch_asset s3://b/k "$1" out`, "bash", digest)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(good); err != nil || !strings.Contains(out, "attempt 1 failed") {
		t.Errorf("a crash then a good copy: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); string(data) != "good\n" {
		t.Errorf("fetched %q", data)
	}
	if out, err := run(strings.Repeat("0", 64)); err == nil || strings.Count(out, "failed") != 5 {
		t.Errorf("a copy with another digest: %v after %d attempts, want a failure after 5\n%s", err, strings.Count(out, "failed"), out)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("a file with the wrong digest was left: %v", err)
	}
}
