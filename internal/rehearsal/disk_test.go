package rehearsal

import (
	"strings"
	"testing"
)

// The lab's disk: 252 GiB, as on the machine where a drill failed with
// 47 GiB free less a 13 GiB folder left by an earlier run.
func TestDiskShortfall(t *testing.T) {
	const gib = uint64(1) << 30
	size := 252 * gib
	line := uint64(0.15 * float64(size))
	for _, c := range []struct {
		free, want uint64
	}{
		{59 * gib, 0},
		{line + 16*gib, 0},
		{line + 16*gib - 1, 1},
		{34 * gib, line + 16*gib - 34*gib},
	} {
		if got := diskShortfall(c.free, size); got != c.want {
			t.Errorf("%d GiB free of 252: short %d bytes, want %d", c.free/gib, got, c.want)
		}
	}
	// A folder not made yet is on its parent's filesystem: no stat error,
	// at most a shortfall.
	if err := checkDiskRoom(t.TempDir() + "/not/yet"); err != nil && !strings.Contains(err.Error(), "GiB free of") {
		t.Errorf("a folder not made yet: %v", err)
	} else if err != nil {
		t.Logf("this machine: %v", err)
	}
}
