package lab

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// kube-proxy's defaults (KubeProxyConntrackConfiguration): a table of
// maxPerCore entries per CPU, at least min.
const (
	kubeProxyConntrackMaxPerCore = 32768
	kubeProxyConntrackMin        = 131072
)

// MatchKubeProxyConntrack sizes the machine's connection-tracking table
// as kube-proxy sizes it on a node of this machine's CPUs. On EC2,
// kube-proxy sets it itself; a lab node is in a network namespace, where
// the kernel lets no one set it, so kube-proxy finds it already right
// instead of failing to start (it writes only a value that differs).
func MatchKubeProxyConntrack() error {
	max := max(kubeProxyConntrackMaxPerCore*runtime.NumCPU(), kubeProxyConntrackMin)
	const maxFile, hashFile = "/proc/sys/net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize"
	// kube-proxy grows the hash table to a quarter of the table too.
	if hash, err := readInt(hashFile); err != nil {
		return err
	} else if hash < max/4 {
		if err := os.WriteFile(hashFile, []byte(strconv.Itoa(max/4)), 0o644); err != nil {
			return fmt.Errorf("lab: conntrack hash size: %w", err)
		}
	}
	if err := os.WriteFile(maxFile, []byte(strconv.Itoa(max)), 0o644); err != nil {
		return fmt.Errorf("lab: nf_conntrack_max as kube-proxy sets it: %w", err)
	}
	return nil
}

// inotify limits for a machine that runs many nodes: on EC2 each node has
// a kernel, and its own 128 inotify instances; here every node's systemd,
// containerd and kubelet share the machine's (kind asks for the same).
const (
	inotifyInstances = 8192
	inotifyWatches   = 524288
)

// RaiseInotifyLimits raises the machine's inotify limits to what many
// nodes need, never lowering them: past the default 128 instances, a
// node's containerd fails to start its CRI plugin ("too many open files").
func RaiseInotifyLimits() error {
	for file, want := range map[string]int{"/proc/sys/fs/inotify/max_user_instances": inotifyInstances, "/proc/sys/fs/inotify/max_user_watches": inotifyWatches} {
		have, err := readInt(file)
		if err != nil {
			return err
		}
		if have < want {
			if err := os.WriteFile(file, []byte(strconv.Itoa(want)), 0o644); err != nil {
				return fmt.Errorf("lab: raising %s: %w", file, err)
			}
		}
	}
	return nil
}

func readInt(file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}
