package lab

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/awsdouble"
	"github.com/kubeha/kubeha/internal/bootstrap"
	"github.com/kubeha/kubeha/internal/netlab"
	"github.com/kubeha/kubeha/internal/tools"
)

// TestNodeContainersBoot boots nodes as kubeha's rehearsal will: Debian 12
// system containers over one shared rootfs, each in its own network
// namespace, systemd as PID 1 and cloud-init running the node's user-data
// (rendered by kubeha's renderer) from a NoCloud seed. Two boot at once,
// each runs its own user-data and nothing else's, and kubeha's imds.sh
// reads the node's own metadata from the IMDSv2 double at 169.254.169.254.
// Stopping them leaves no process, mount or cgroup.
func TestNodeContainersBoot(t *testing.T) {
	rootfs := needNodes(t)

	dir := t.TempDir()
	l, err := netlab.New("khct", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.AddNetwork("zone-a", "10.61.1.1"); err != nil {
		t.Fatal(err)
	}
	names := []string{"node-a", "node-b"}
	containers := make([]*Container, len(names))
	defer func() {
		for _, c := range containers {
			if c != nil {
				_ = c.Stop(30 * time.Second)
			}
		}
	}()
	booted := time.Now()
	for i, name := range names {
		ip := fmt.Sprintf("10.61.1.%d", 2+i)
		h, err := l.AddHostOn("zone-a", name, ip, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		serveIMDS(t, h, awsdouble.Instance{ID: "i-0" + name, Zone: "eu-west-1a", Region: "eu-west-1", PrivateIP: ip, Hostname: name, Role: "kubeha-lab"})
		spec := ContainerSpec{Rootfs: rootfs, Dir: filepath.Join(dir, "containers", name), Name: name, Netns: h.NamespacePath(), UserData: probeUserData(t, name)}
		if containers[i], err = BootContainer(spec); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i, c := range containers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			result, err := c.WaitCloudInit(3 * time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if len(result.Errors) != 0 || !strings.Contains(result.Datasource, "NoCloud") {
				t.Errorf("%s: cloud-init datasource %q, errors %v; want NoCloud and none", c.Name, result.Datasource, result.Errors)
			}
			probe, _ := os.ReadFile(filepath.Join(c.Root, "etc/kubeha-probe"))
			ran, _ := os.ReadFile(filepath.Join(c.Root, "var/tmp/ran-on"))
			want := fmt.Sprintf("%s\ni-0%s eu-west-1a 10.61.1.%d\n", c.Name, c.Name, 2+i)
			if strings.TrimSpace(string(probe)) != c.Name || string(ran) != want {
				t.Errorf("%s ran someone else's user-data or metadata: file %q, runcmd saw %q, want %q", c.Name, probe, ran, want)
			}
		}()
	}
	wg.Wait()
	t.Logf("MEASURED: %d nodes booted together, cloud-init done on all in %.1fs", len(names), time.Since(booted).Seconds())

	stopped := time.Now()
	for i, c := range containers {
		if err := c.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		containers[i] = nil
	}
	t.Logf("MEASURED: both halted in %.1fs", time.Since(stopped).Seconds())
	parents, err := cgroupParents()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		for _, h := range parents {
			if _, err := os.Stat(filepath.Join(h, "kubeha-"+name)); err == nil {
				t.Errorf("cgroup %s/kubeha-%s is left", h, name)
			}
		}
	}
	if out, _ := exec.Command("pgrep", "-f", "systemd-nspawn.*khct").Output(); len(out) > 0 {
		t.Errorf("nspawn processes left: %s", out)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), filepath.Join(dir, "containers")) {
		t.Error("a container's root is still mounted")
	}
}

// needNodes stops the test unless nodes can boot here (root, nspawn,
// debootstrap, network namespaces), and returns the node rootfs, built
// first if need be.
func needNodes(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		tools.Unavailable(t, "booting system containers needs root")
	}
	tools.Need(t, "systemd-nspawn")
	tools.Need(t, "debootstrap")
	tools.Need(t, "losetup")
	if why := netlab.Available(); why != "" {
		tools.Unavailable(t, why)
	}
	start := time.Now()
	rootfs, err := tools.Rootfs(testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED: node rootfs ready in %.1fs (%s)", time.Since(start).Seconds(), rootfs)
	return rootfs
}

// serveIMDS serves instance's metadata at 169.254.169.254:80 inside the
// host's network namespace, as EC2's link-local service.
func serveIMDS(t *testing.T, h *netlab.Host, instance awsdouble.Instance) {
	t.Helper()
	if err := h.InHost("ip", "addr", "add", awsdouble.IMDSAddress+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	listener, err := h.Listen("tcp", awsdouble.IMDSAddress+":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: awsdouble.NewIMDS(instance), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(listener) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// probeUserData is user-data from kubeha's renderer: a file naming the
// node, and kubeha's own imds.sh (as an etcd member gets it) asked for the
// instance's id, zone and address.
func probeUserData(t *testing.T, name string) []byte {
	t.Helper()
	etcd := bootstrap.NewEtcdCluster("lab", []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}, 3, 20, 15)
	member, err := etcd.Node(bootstrap.EtcdNodeParams{Member: etcd.Members[0], Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	imds := member.File(bootstrap.ScriptDir + "/imds.sh")
	if imds == nil {
		t.Fatal("an etcd member's user-data has no imds.sh")
	}
	node := bootstrap.Node{
		Files: []bootstrap.File{*imds, {Path: "/etc/kubeha-probe", Content: name + "\n", Mode: "0644"}},
		Commands: [][]string{{"bash", "-c", ". " + imds.Path + " && hostname > /var/tmp/ran-on && " +
			`echo "$(imds instance-id) $(imds placement/availability-zone) $(imds local-ipv4)" >> /var/tmp/ran-on`}},
	}
	data, err := node.UserData()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testLog passes a build's progress to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
