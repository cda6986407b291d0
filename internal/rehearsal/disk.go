package rehearsal

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// Every node's kubelet sees the lab's one disk as its own, and evicts pods
// (and taints its node) once less than kubeletEvictionFreeShare of it is
// free, the kubelet's default for its image filesystem. A drill u leaves
// about 13 GiB in the lab's folder (18 instances and the etcd volumes), so
// the rehearsal asks for labDiskGiB above that line before it starts:
// below it, every node comes under disk pressure at once, and a drain
// waits on pods that can go nowhere.
const (
	kubeletEvictionFreeShare = 0.15
	labDiskGiB               = 16
)

// diskShortfall is how many bytes short of room for the lab a filesystem
// of size bytes with free bytes free is; 0 if there is room.
func diskShortfall(free, size uint64) uint64 {
	need := uint64(kubeletEvictionFreeShare*float64(size)) + labDiskGiB<<30
	if free >= need {
		return 0
	}
	return need - free
}

// checkDiskRoom refuses to start when the filesystem dir is (or will be)
// on has too little free.
func checkDiskRoom(dir string) error {
	var fs syscall.Statfs_t
	for at := dir; ; at = filepath.Dir(at) {
		err := syscall.Statfs(at, &fs)
		if err == nil {
			break
		}
		if at == filepath.Dir(at) {
			return fmt.Errorf("rehearsal: the lab's folder %s: %w", dir, err)
		}
	}
	free, size := fs.Bavail*uint64(fs.Bsize), fs.Blocks*uint64(fs.Bsize)
	if short := diskShortfall(free, size); short > 0 {
		return fmt.Errorf("rehearsal: %s has %d GiB free of %d GiB; its nodes' kubelets evict pods below %.0f%% free (%d GiB) and the lab needs about %d GiB more: free %d GiB (an old lab folder, /tmp/kubeha-rehearsal-*, may be left)",
			dir, free>>30, size>>30, kubeletEvictionFreeShare*100, uint64(kubeletEvictionFreeShare*float64(size))>>30, labDiskGiB, (short+1<<30-1)>>30)
	}
	return nil
}
