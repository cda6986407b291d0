package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPackArchiveKeepsAFreshArchive: an archive newer than its binaries is
// kept as it is; one older than any of them is packed again, with the new
// binary in it.
func TestPackArchiveKeepsAFreshArchive(t *testing.T) {
	dir := t.TempDir()
	bin, archive := filepath.Join(dir, "bin"), filepath.Join(dir, "out", "tools.tar.gz")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	for _, name := range []string{"a", "b"} {
		path := filepath.Join(bin, name)
		if err := os.WriteFile(path, []byte(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, past, past); err != nil {
			t.Fatal(err)
		}
	}
	pack := func() (os.FileInfo, []byte) {
		t.Helper()
		if err := packArchive(archive, "x", bin, "", "a", "b"); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(archive)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(archive)
		return info, data
	}
	first, firstData := pack()
	// Marks the archive so that a repack would show.
	marked := first.ModTime().Add(-time.Minute)
	if err := os.Chtimes(archive, marked, marked); err != nil {
		t.Fatal(err)
	}
	if again, _ := pack(); !again.ModTime().Equal(marked) {
		t.Errorf("an archive newer than its binaries was packed again (%v, want %v kept)", again.ModTime(), marked)
	}
	if err := os.WriteFile(filepath.Join(bin, "b"), []byte("b, rebuilt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, data := pack(); string(data) == string(firstData) {
		t.Error("an archive older than a rebuilt binary was kept")
	}
}
