package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/tools"
)

// flannelCNIConf is the flannel chart's CNI configuration (v0.28.9's
// values.yaml, cniConf): flannel hands each pod to the bridge plugin on
// cni0, as the node's default gateway.
const flannelCNIConf = `{"name": "cbr0", "cniVersion": "0.3.1", "type": "flannel",
 "delegate": {"hairpinMode": true, "isDefaultGateway": true}}`

// On a node whose flannel daemon wrote its subnet (subnet.env), the pinned
// plugins wire pods as flannel's chart configures them: each gets an
// address of the node's /24 on cni0, a route to the whole pod network,
// and reaches the other pod; deleting them releases their addresses and
// interfaces. The plugins are the ones nodes install (the CNI reference
// plugins' archive) and flannel's.
func TestFlannelCNIWiresPodsOnANode(t *testing.T) {
	if why := netlab.Available(); why != "" {
		tools.Unavailable(t, "the lab "+why)
	}
	if err := tools.Missing(append([]string{"flannel"}, CNIPlugins...)...); err != nil {
		tools.Unavailable(t, err.Error())
	}
	binDir, err := tools.Dir()
	if err != nil {
		t.Fatal(err)
	}
	node := oneNodeLab(t, "cni", "10.203.0")
	prefix := fmt.Sprintf("kubeha-cni%d-", os.Getpid()%10000)
	// What flanneld writes once the controller-manager gave the Node its
	// /24, and paths of the test's own instead of the machine's.
	dir := t.TempDir()
	subnetFile := filepath.Join(dir, "subnet.env")
	if err := os.WriteFile(subnetFile, []byte("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal([]byte(flannelCNIConf), &conf); err != nil {
		t.Fatal(err)
	}
	ipamDir := filepath.Join(dir, "ipam")
	conf["subnetFile"], conf["dataDir"], conf["ipam"] = subnetFile, filepath.Join(dir, "flannel"), map[string]any{"dataDir": ipamDir}
	confJSON, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	cni := func(command, pod string) ([]byte, error) {
		cmd := node.Command([]string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + pod, "CNI_NETNS=/run/netns/" + prefix + pod,
			"CNI_IFNAME=eth0", "CNI_PATH=" + binDir}, filepath.Join(binDir, "flannel"))
		cmd.Stdin = strings.NewReader(string(confJSON))
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("CNI %s %s: %w: %s %s", command, pod, err, out, stderr(err))
		}
		return out, nil
	}

	addresses := map[string]string{}
	for _, pod := range []string{"pod1", "pod2"} {
		if out, err := exec.Command("ip", "netns", "add", prefix+pod).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer exec.Command("ip", "netns", "del", prefix+pod).Run()
		out, err := cni("ADD", pod)
		if err != nil {
			t.Fatal(err)
		}
		var result struct {
			IPs []struct{ Address, Gateway string }
		}
		if err := json.Unmarshal(out, &result); err != nil || len(result.IPs) != 1 {
			t.Fatalf("%s: result %s (%v)", pod, out, err)
		}
		ip, subnet, err := net.ParseCIDR(result.IPs[0].Address)
		if err != nil || subnet.String() != "10.244.1.0/24" || result.IPs[0].Gateway != "10.244.1.1" {
			t.Errorf("%s: address %s via %s, want one of the node's 10.244.1.0/24 via 10.244.1.1", pod, result.IPs[0].Address, result.IPs[0].Gateway)
		}
		addresses[pod] = ip.String()
		routes, _ := exec.Command("ip", "-n", prefix+pod, "route").Output()
		if !strings.Contains(string(routes), "10.244.0.0/16 via 10.244.1.1") || !strings.Contains(string(routes), "default via 10.244.1.1") {
			t.Errorf("%s: routes\n%s\nwant the pod network and the default through cni0", pod, routes)
		}
	}
	bridge, _ := exec.Command("ip", "-n", filepath.Base(node.NamespacePath()), "addr", "show", "cni0").Output()
	if !strings.Contains(string(bridge), "inet 10.244.1.1/24") {
		t.Errorf("the node's cni0:\n%s\nwant 10.244.1.1/24, the pods' gateway", bridge)
	}

	// pod2 reaches pod1 over cni0.
	listener, err := inNetns(prefix+"pod1", func() (any, error) { return net.Listen("tcp", addresses["pod1"]+":8080") })
	if err != nil {
		t.Fatal(err)
	}
	defer listener.(net.Listener).Close()
	go func() {
		if c, err := listener.(net.Listener).Accept(); err == nil {
			c.Write([]byte("pod1"))
			c.Close()
		}
	}()
	answer, err := inNetns(prefix+"pod2", func() (any, error) {
		c, err := net.DialTimeout("tcp", addresses["pod1"]+":8080", 3*time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		buf := make([]byte, 4)
		_, err = c.Read(buf)
		return string(buf), err
	})
	if err != nil || answer != "pod1" {
		t.Errorf("pod2 (%s) to pod1 (%s): %q, %v", addresses["pod2"], addresses["pod1"], answer, err)
	}

	for _, pod := range []string{"pod1", "pod2"} {
		if _, err := cni("DEL", pod); err != nil {
			t.Error(err)
		}
		if links, _ := exec.Command("ip", "-n", prefix+pod, "link", "show", "eth0").CombinedOutput(); !strings.Contains(string(links), "does not exist") {
			t.Errorf("%s: eth0 left after DEL: %s", pod, links)
		}
	}
	held, _ := filepath.Glob(filepath.Join(ipamDir, "cbr0", "10.244.*"))
	if len(held) != 0 {
		t.Errorf("addresses still held after DEL: %v", held)
	}
	t.Logf("MEASURED flannel CNI: pods %v on the node's 10.244.1.0/24, pod2 reached pod1, both released", addresses)
}

// inNetns runs fn on a thread inside the named network namespace, so that
// the sockets it opens belong to it.
func inNetns(name string, fn func() (any, error)) (any, error) {
	type answer struct {
		v   any
		err error
	}
	done := make(chan answer)
	go func() {
		// The thread is left to die with the goroutine, never reused.
		runtime.LockOSThread()
		ns, err := os.Open("/run/netns/" + name)
		if err == nil {
			err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
			ns.Close()
		}
		if err != nil {
			done <- answer{nil, err}
			return
		}
		v, err := fn()
		done <- answer{v, err}
	}()
	a := <-done
	return a.v, a.err
}

// stderr is what a failed command printed on standard error.
func stderr(err error) string {
	if exit, ok := err.(*exec.ExitError); ok {
		return string(exit.Stderr)
	}
	return ""
}
