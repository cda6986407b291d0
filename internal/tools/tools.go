// Package tools finds the pinned binaries that hack/tools.sh builds into
// $KUBEHA_CACHE/tools/bin (default ~/.cache/kubeha, outside the clone), or
// $KUBEHA_TOOLS_BIN.
package tools

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/cache"
)

// CacheDir is where kubeha keeps what it builds once per machine
// (cache.Dir): pinned tools, the nodes' root filesystem, local assets.
func CacheDir() (string, error) { return cache.Dir() }

// Dir is the folder holding the built tools.
func Dir() (string, error) {
	if dir := os.Getenv("KUBEHA_TOOLS_BIN"); dir != "" {
		return dir, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "tools", "bin"), nil
}

// repoRoot is the kubeha checkout the working directory is in.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "tools.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("tools: not inside the kubeha repository")
		}
		dir = parent
	}
}

// Build runs hack/tools.sh, which builds the pinned binaries that are not
// built yet (about 10 to 15 minutes on 2 cores the first time).
func Build(log io.Writer) error {
	_, err := runHack("tools.sh", log)
	return err
}

// runHack runs a script of hack/, its progress to log, and returns what it
// printed on stdout.
func runHack(name string, log io.Writer) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "hack", name)
	cmd := exec.Command(script)
	cmd.Stderr = log
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tools: %s: %w", script, err)
	}
	return string(out), nil
}

// Path is the full path of a built tool, or an error saying how to build it.
func Path(name string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("tools: %s is not built: run hack/tools.sh (make tools)", name)
	}
	return p, nil
}

// Missing says how to build the first of these tools that is not built,
// or nil when all are.
func Missing(names ...string) error {
	for _, name := range names {
		if _, err := Path(name); err != nil {
			return err
		}
	}
	return nil
}

// Unavailable stops a test that cannot run on this machine: loudly skipped
// on a developer's machine, failed in CI (CI is set), where it must run.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("this test must run in CI, but %s", reason)
	}
	t.Skipf("\n\n*** SKIPPED: %s. CI runs this test; as root on Debian, `make test` installs what it needs (hack/deps.sh). ***\n\n", reason)
}

// Need returns the path of a command from PATH, or stops the test.
func Need(t testing.TB, command string) string {
	t.Helper()
	path, err := exec.LookPath(command)
	if err != nil {
		Unavailable(t, command+" is not installed")
	}
	return path
}

// Rootfs runs hack/rootfs.sh, which builds the Debian 12 root filesystem
// the rehearsal boots as nodes (once per version of the script, into the
// cache), and returns its folder. Needs root and debootstrap.
func Rootfs(log io.Writer) (string, error) {
	out, err := runHack("rootfs.sh", log)
	if err != nil {
		return "", err
	}
	lines := strings.Fields(out)
	if len(lines) == 0 {
		return "", fmt.Errorf("tools: hack/rootfs.sh printed no folder")
	}
	return lines[len(lines)-1], nil
}
