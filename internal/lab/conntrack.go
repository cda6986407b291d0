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

func readInt(file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, fmt.Errorf("lab: %w (is the nf_conntrack module loaded?)", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}
